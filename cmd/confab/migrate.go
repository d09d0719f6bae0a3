package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/confab-chat/confab/repository"
)

// migrateCmd runs `confab migrate up|down|status`.
func migrateCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		return usageError{"usage: confab migrate up|down|status [flags]"}
	}
	action := args[0]
	cfg, err := parseConfig(args[1:])
	if err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	store, err := repository.Open(ctx, repository.Options{URL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath})
	if err != nil {
		return err
	}
	defer store.Close()
	switch action {
	case "up":
		names, err := store.Migrate(ctx)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Println("schema is up to date")
		}
		for _, n := range names {
			fmt.Println("applied", n)
		}
	case "down":
		names, err := store.Rollback(ctx)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Println("nothing to roll back")
		}
		for _, n := range names {
			fmt.Println("rolled back", n)
		}
	case "status":
		ms, err := store.MigrationStatuses(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			state := "pending"
			if m.Applied {
				state = "applied"
			}
			fmt.Printf("%s_%s\t%s\n", m.Name, m.Comment, state)
		}
	}
	return nil
}
