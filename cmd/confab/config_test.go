package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
)

func TestConfigRefusesBrokenSettings(t *testing.T) {
	for _, args := range [][]string{
		{"-safety-poll", "0s"},
		{"-stream-heartbeat", "0s"},
		{"-subscriber-buffer", "0"},
		{"-retention", "0s"},
		{"-jwt-secret", "short"},
		{"-tls-cert", "x.pem"},
		{"-max-body-bytes", "-1"},
		{"-presence-max-members", "0"},
		{"-password-hash-time", "0"},
		{"-password-hash-memory", "4"},
		{"-register-burst", "-1"},
		{"-register-interval", "0s"},
		{"-register-hash-concurrency", "0"},
		{"-login-hash-concurrency", "0"},
		{"-login-free-failures", "0"},
		{"-login-free-failures-per-addr", "0"},
		{"-login-backoff", "0s"},
		{"-login-backoff", "1m", "-login-backoff-max", "30s"},
		{"-login-failure-window", "0s"},
		{"-login-trust", "-1h"},
		{"-sends-per-second", "-1"},
		{"-send-burst", "0"},
		{"-groups-per-minute", "-1"},
		{"-member-adds-per-minute", "-5"},
		{"-conversations-page", "0"},
		{"-conversations-page", "600"},
		{"-conversations-page-max", "50"},
	} {
		if _, err := parseConfig(args); err == nil {
			t.Errorf("%v was accepted", args)
		}
	}
	t.Setenv("CONFAB_SAFETY_POLL", "soon")
	if _, err := parseConfig(nil); err == nil || !strings.Contains(err.Error(), "CONFAB_SAFETY_POLL") {
		t.Errorf("a bad environment value: %v", err)
	}
}

func TestConfigFromEnvironmentAndFlags(t *testing.T) {
	t.Setenv("CONFAB_ADDR", ":9999")
	t.Setenv("CONFAB_MAX_GROUP_MEMBERS", "50")
	t.Setenv("CONFAB_SENDS_PER_SECOND", "0")
	t.Setenv("CONFAB_MEMBER_ADDS_PER_MINUTE", "7")
	cfg, err := parseConfig([]string{"-addr", ":7777", "-member-adds-per-minute", "9"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":7777" || cfg.API.MaxGroupMembers != 50 {
		t.Fatalf("addr %s, max group %d: a flag wins over the environment, which wins over the default", cfg.Addr, cfg.API.MaxGroupMembers)
	}
	if cfg.API.SendsPerSecond != 0 || cfg.API.MemberAddsPerMinute != 9 || cfg.API.GroupsPerMinute != api.DefaultConfig().GroupsPerMinute {
		t.Fatalf("sends %d/s, adds %d/min, groups %d/min", cfg.API.SendsPerSecond, cfg.API.MemberAddsPerMinute, cfg.API.GroupsPerMinute)
	}
	a, _ := parseConfig(nil)
	b, _ := parseConfig(nil)
	if a.NodeID == b.NodeID {
		t.Fatalf("two processes would share node id %s", a.NodeID)
	}
}

func TestConfigPasswordHash(t *testing.T) {
	cfg, err := parseConfig([]string{"-password-hash-memory", "64", "-password-hash-time", "1"})
	if err != nil {
		t.Fatal(err)
	}
	if hp := cfg.API.HashParams; hp.MemoryKiB != 64 || hp.Time != 1 || hp.Threads != 1 {
		t.Fatalf("hash params %+v", hp)
	}
	if cfg, _ := parseConfig(nil); cfg.API.HashParams != api.DefaultHashParams {
		t.Fatalf("default hash params %+v, want OWASP's %+v", cfg.API.HashParams, api.DefaultHashParams)
	}
}

// TestConfigRefusesBadLists: a list with one bad entry is refused whole,
// naming the entry, instead of being half applied.
func TestConfigRefusesBadLists(t *testing.T) {
	for _, tc := range []struct{ flag, value, bad string }{
		{"-trusted-proxies", "10.0.0.1,not-an-ip", "not-an-ip"},
		{"-trusted-proxies", "10.0.0.0/33", "10.0.0.0/33"},
		{"-cors-origins", "https://app.example,app.example", "app.example"},
		{"-cors-origins", "https://app.example/path", "https://app.example/path"},
	} {
		_, err := parseConfig([]string{tc.flag, tc.value})
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(tc.bad)) {
			t.Errorf("%s %s: %v", tc.flag, tc.value, err)
		}
	}
	cfg, err := parseConfig([]string{"-trusted-proxies", "10.0.0.1, 192.168.0.0/16,::1", "-cors-origins", "https://app.example,http://localhost:3000"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.API.TrustedProxies) != 3 || len(cfg.API.CORSOrigins) != 2 {
		t.Fatalf("proxies %q, origins %q", cfg.API.TrustedProxies, cfg.API.CORSOrigins)
	}
}

// TestUnknownCommandIsAUsageError: a mistyped command or a stray argument
// exits 2 instead of serving with the defaults.
func TestUnknownCommandIsAUsageError(t *testing.T) {
	for _, args := range [][]string{
		{"servee"},
		{"serve", "extra"},
		{"-addr", "127.0.0.1:0", "stray"},
		{"serve", "-no-such-flag"},
		{"migrate"},
		{"migrate", "sideways"},
	} {
		if code := exitCode(run(t.Context(), args)); code != 2 {
			t.Errorf("confab %s: exit status %d, want 2", strings.Join(args, " "), code)
		}
	}
	if code := exitCode(run(t.Context(), []string{"version"})); code != 0 {
		t.Errorf("confab version: exit status %d", code)
	}
}

// TestConfigAbuseLimits: every limit has a flag and an environment
// variable, and the defaults are the API's.
func TestConfigAbuseLimits(t *testing.T) {
	cfg, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	def := api.DefaultConfig()
	if cfg.API.RegisterBurst != def.RegisterBurst || cfg.API.LoginBackoffMax != def.LoginBackoffMax || cfg.API.LoginHashConcurrency != def.LoginHashConcurrency {
		t.Fatalf("defaults differ from api.DefaultConfig: %+v", cfg.API)
	}
	t.Setenv("CONFAB_REGISTER_BURST", "0")
	t.Setenv("CONFAB_LOGIN_TRUST", "48h")
	cfg, err = parseConfig([]string{"-register-interval", "10m", "-register-hash-concurrency", "3", "-login-hash-concurrency", "5",
		"-login-free-failures", "4", "-login-free-failures-per-addr", "40", "-login-backoff", "2s", "-login-backoff-max", "1h", "-login-failure-window", "2h"})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.API
	if a.RegisterBurst != 0 || a.RegisterInterval != 10*time.Minute || a.RegisterHashConcurrency != 3 || a.LoginHashConcurrency != 5 ||
		a.LoginFreeFailures != 4 || a.LoginFreeFailuresPerAddr != 40 || a.LoginBackoff != 2*time.Second || a.LoginBackoffMax != time.Hour ||
		a.LoginFailureWindow != 2*time.Hour || a.LoginTrust != 48*time.Hour {
		t.Fatalf("limits not applied: %+v", a)
	}
}
