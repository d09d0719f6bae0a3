package main

import (
	"github.com/confab-chat/confab/api"
	"strings"
	"testing"
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
