package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository/dbtest"
)

// readmeWalkthrough returns the shell block of README.md between the
// walkthrough markers.
func readmeWalkthrough(t *testing.T) string {
	t.Helper()
	script := readmeBlock(t, "walkthrough")
	if !strings.Contains(script, "CONFAB=${CONFAB:-http://localhost:8080}") {
		t.Fatal("the walkthrough must take its server from CONFAB (default http://localhost:8080)")
	}
	return script
}

// readmeBlock returns the one ```sh block of README.md between the
// <!-- name:start --> and <!-- name:end --> markers.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- "+name+":start -->")
	section, _, ok2 := strings.Cut(rest, "<!-- "+name+":end -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no <!-- %[1]s:start --> ... <!-- %[1]s:end --> section", name)
	}
	section = strings.TrimSpace(section)
	script, ok := strings.CutPrefix(section, "```sh\n")
	script, ok2 = strings.CutSuffix(script, "```")
	if !ok || !ok2 || strings.Contains(script, "```") {
		t.Fatalf("the %s section must be exactly one ```sh block:\n%s", name, section)
	}
	return script
}

// TestReadmeWalkthrough runs README.md's curl walkthrough, word for word,
// against a real server on each store.
func TestReadmeWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "grep", "head", "cut"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the walkthrough needs %s: %v", tool, err)
		}
	}
	script := readmeWalkthrough(t)
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			opts := dbtest.Options(t, dialect) // a fresh store: alice and bob are new
			args := []string{"-sqlite-path", opts.SQLitePath, "-notify-channel", "walkthrough_" + dialect}
			if opts.URL != "" {
				args = append(args, "-database-url", opts.URL)
			}
			base, stop := startServer(t, args...)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
			cmd.Env = append(os.Environ(), "CONFAB="+base)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("the walkthrough failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			out := stdout.String()
			t.Logf("walkthrough output:\n%s", out)

			lines := strings.Split(strings.TrimSpace(out), "\n")
			for _, want := range []string{"register alice: 201", "register bob: 201"} {
				if !strings.Contains(out, want) {
					t.Errorf("the output lacks %q", want)
				}
			}
			// The second page of history holds the first two messages, and
			// nothing is older.
			last := lines[len(lines)-1]
			if !strings.Contains(last, `"body":"Hi Bob!"`) || !strings.Contains(last, `"body":"Lunch at noon?"`) || !strings.Contains(last, `"has_more":false`) {
				t.Errorf("the last page is %s", last)
			}
			if err := stop(); err != nil {
				t.Fatalf("serve: %v", err)
			}
		})
	}
}

// TestReadmeRealtime runs README.md's stream and long-poll blocks, word for
// word, after the walkthrough, in the same shell. Streams and the poll loop
// run until interrupted, so the test bounds them: each `curl -N` gets
// --max-time (its timeout counts as success), and the loop runs under
// `timeout`.
func TestReadmeRealtime(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "grep", "head", "cut", "tail", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the README blocks need %s: %v", tool, err)
		}
	}
	walkthrough, stream, poll := readmeWalkthrough(t), readmeBlock(t, "stream"), readmeBlock(t, "poll")
	const boundStreams = `curl() { if [[ " $* " == *" -N "* ]]; then command curl --max-time 2 "$@" || [ $? -eq 28 ]; else command curl "$@"; fi; }` + "\n"
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			opts := dbtest.Options(t, dialect)
			args := []string{"-sqlite-path", opts.SQLitePath, "-notify-channel", "readme_rt_" + dialect}
			if opts.URL != "" {
				args = append(args, "-database-url", opts.URL)
			}
			base, stop := startServer(t, args...)
			run := func(script string, wantExit int) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
				cmd.Dir = t.TempDir()
				cmd.Env = append(os.Environ(), "CONFAB="+base)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				if code := cmd.ProcessState.ExitCode(); code != wantExit {
					t.Fatalf("exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", code, err, wantExit, stdout.String(), stderr.String())
				}
				return stdout.String()
			}

			// One shell, as a reader would use it: the walkthrough (its
			// variables exported for the poll loop's shell), both streams,
			// then the poll loop until `timeout` stops it.
			out := run("set -a\n"+walkthrough+"\n"+boundStreams+stream+
				"\necho '--- poll'\ntimeout 3 bash -euo pipefail -c "+shellQuote(poll)+" || [ $? -eq 124 ]\n", 0)
			streams, polls, _ := strings.Cut(out, "--- poll")
			// Both streams replay bob's whole stream: the conversation, four
			// messages, each with its position as the id.
			if n := strings.Count(streams, "event: ready"); n != 2 {
				t.Errorf("%d ready frames, want 2:\n%s", n, streams)
			}
			if n := strings.Count(streams, "event: message.created"); n != 8 {
				t.Errorf("%d message frames, want 8:\n%s", n, streams)
			}
			for _, want := range []*regexp.Regexp{
				regexp.MustCompile(`id: \d+-\d+\nevent: conversation.created`),
				regexp.MustCompile(`id: \d+-\d+\nevent: message.created`),
				regexp.MustCompile(`Sure, see you there.`),
			} {
				if !want.MatchString(streams) {
					t.Errorf("the streams lack %s", want)
				}
			}
			if !regexp.MustCompile(`"cursor":"\d+-\d+"`).MatchString(polls) || strings.Count(polls, `"type":"message.created"`) != 4 {
				t.Errorf("the poll loop printed:\n%s", polls)
			}
			if err := stop(); err != nil {
				t.Fatalf("serve: %v", err)
			}
		})
	}
}

// shellQuote quotes s for bash as one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
