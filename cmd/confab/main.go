// Command confab is the confab chat server.
//
//	confab [serve] [flags]        run the server (the default)
//	confab migrate up|down|status  manage the schema
//	confab version                 print the version
//	confab bench run|reference|sql load and measure a server (see bench)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/confab-chat/confab/bench"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "confab:", err)
		if errors.As(err, new(usageError)) {
			fmt.Fprintln(os.Stderr, usage)
		}
		os.Exit(exitCode(err))
	}
}

const usage = "usage: confab [serve] [flags] | confab migrate up|down|status [flags] | confab version | confab bench run|reference|sql [flags]\nRun `confab serve -h` for the flags."

// usageError is a command line confab does not understand. It exits 2, as
// the flag package does, so that a typo such as `confab servee` fails
// instead of serving with defaults.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitCode is the process status for an error run returned.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(usageError)):
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
	case "version":
		fmt.Println("confab", version)
		return nil
	case "help":
		fmt.Println(usage)
		return nil
	case "migrate":
		return migrateCmd(ctx, args)
	case "bench":
		return bench.Main(ctx, args, os.Stdout)
	default:
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	cfg, err := parseConfig(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	m := &Main{cfg: cfg, log: newLogger(cfg)}
	return m.Run(ctx)
}

func newLogger(cfg *Config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
