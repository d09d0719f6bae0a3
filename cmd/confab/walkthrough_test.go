package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository/dbtest"
)

// readmeWalkthrough returns the shell block of README.md between the
// walkthrough markers.
func readmeWalkthrough(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- walkthrough:start -->")
	section, _, ok2 := strings.Cut(rest, "<!-- walkthrough:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- walkthrough:start --> ... <!-- walkthrough:end --> section")
	}
	section = strings.TrimSpace(section)
	script, ok := strings.CutPrefix(section, "```sh\n")
	script, ok2 = strings.CutSuffix(script, "```")
	if !ok || !ok2 || strings.Contains(script, "```") {
		t.Fatalf("the walkthrough section must be exactly one ```sh block:\n%s", section)
	}
	if !strings.Contains(script, "CONFAB=${CONFAB:-http://localhost:8080}") {
		t.Fatal("the walkthrough must take its server from CONFAB (default http://localhost:8080)")
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
