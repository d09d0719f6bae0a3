// Package bench is confab's load tool, run as `confab bench`.
//
//	confab bench run -url URL [-ref URL|sql:DSN|sse] ...  drive a server and check delivery
//	confab bench reference -addr ADDR                   serve a bare SSE broadcaster
//	confab bench sql -database-url DSN ...              the SQL of a message send, no HTTP
//	confab bench report RUN.json ...                    Markdown of saved runs, judged against the targets
//
// `run` registers users, puts them in conversations, opens SSE streams and
// long-polls, has writers POST messages at a paced rate, and measures POST
// and delivery latency, throughput, errors, the server's CPU and RSS (from
// /metrics), and whether every recipient saw every event of its stream
// exactly once and in order. Given a reference it alternates rounds
// (confab, reference, confab, reference, ...) and reports each figure as a
// ratio to the reference measured in the same run, because absolute times
// on a shared machine drift.
package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// epoch is the time base of the timestamps writers put in message bodies:
// writer and reader are one process, so one monotonic clock serves both.
var epoch = time.Now()

func since() int64 { return int64(time.Since(epoch)) }

const usage = `usage:
  confab bench run -url URL [-ref URL|sql:DSN|sse] [flags]   load a server (see run -h)
  confab bench reference [-addr 127.0.0.1:8081]               serve the bare SSE reference
  confab bench sql -database-url DSN [flags]                  time the SQL of a send without HTTP
  confab bench report RUN.json ...                            Markdown of saved -json runs and the targets`

// Main runs `confab bench` with args (the words after "bench").
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout)
	case "reference":
		return referenceCmd(ctx, args[1:], stdout)
	case "sql":
		return sqlCmd(ctx, args[1:], stdout)
	case "report":
		return reportCmd(ctx, args[1:], stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("bench: unknown command %q\n%s", args[0], usage)
}
