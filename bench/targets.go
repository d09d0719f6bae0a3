package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// reportCmd renders saved `bench run -json` reports as Markdown: the
// targets of the standard scenarios judged against them, then each
// scenario's table. A report's label names its scenario as "store/name"
// (postgres/fanout-1k, sqlite/writes-32, ...).
func reportCmd(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("confab bench report", flag.ContinueOnError)
	fs.SetOutput(stdout)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var reps []*Report
	for _, path := range fs.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rep := new(Report)
		if err := json.Unmarshal(data, rep); err != nil {
			return fmt.Errorf("bench report: %s: %w", path, err)
		}
		reps = append(reps, rep)
	}
	fmt.Fprint(stdout, "## Targets\n\n| scenario | target | measured | met |\n|---|---|--:|:-:|\n")
	for _, t := range judge(reps) {
		met := "yes"
		if !t.met {
			met = "**no**"
		}
		fmt.Fprintf(stdout, "| %s | %s | %s | %s |\n", t.scenario, t.target, t.measured, met)
	}
	fmt.Fprint(stdout, "\n## Scenarios\n\n")
	for _, rep := range reps {
		rep.WriteMarkdown(stdout)
	}
	return nil
}

type verdict struct {
	scenario, target, measured string
	met                        bool
}

// judge checks each report against the targets of its scenario.
func judge(reps []*Report) []verdict {
	byLabel := map[string]*Report{}
	for _, r := range reps {
		byLabel[r.Label] = r
	}
	var out []verdict
	add := func(scenario, target, measured string, met bool) {
		out = append(out, verdict{scenario, target, measured, met})
	}
	ratio := func(r *Report, key string) float64 { return r.Ratios[key] }
	for _, r := range reps {
		_, name, _ := strings.Cut(r.Label, "/")
		c := r.Confab
		switch {
		case strings.HasPrefix(name, "fanout") && r.Reference != nil:
			add(r.Label, "delivery p50 ≤ 1.1× reference", fmt.Sprintf("%.3f× (%.1f vs %.1f ms)", ratio(r, "delivery_p50"), c.Delivery.P50, r.Reference.Delivery.P50), ratio(r, "delivery_p50") <= 1.1)
			add(r.Label, "delivery p99 ≤ 1.3× reference", fmt.Sprintf("%.3f× (%.1f vs %.1f ms)", ratio(r, "delivery_p99"), c.Delivery.P99, r.Reference.Delivery.P99), ratio(r, "delivery_p99") <= 1.3)
			add(r.Label, "server CPU per delivery ≤ 1.25× reference", fmt.Sprintf("%.3f× (%.1f vs %.1f µs)", ratio(r, "cpu_per_delivery"), c.CPUPerDeliveryUS, r.Reference.CPUPerDeliveryUS), ratio(r, "cpu_per_delivery") <= 1.25)
		case strings.HasPrefix(name, "idle"):
			m := fmt.Sprintf("%.1f KB", c.RSSPerRecipientKB)
			if r.Reference != nil {
				m += fmt.Sprintf(" (reference %.1f KB)", r.Reference.RSSPerRecipientKB)
			}
			add(r.Label, "RSS ≤ 32 KB per idle stream", m, c.RSSPerRecipientKB <= 32)
		case strings.HasPrefix(name, "writes"):
			add(r.Label, "≥ 5,000 messages/s", fmt.Sprintf("%.0f/s", c.WritesPerS), c.WritesPerS >= 5000)
			if r.Reference != nil {
				add(r.Label, "≥ 0.6× the same SQL without HTTP", fmt.Sprintf("%.3f× (%.0f vs %.0f/s)", ratio(r, "writes_per_s"), c.WritesPerS, r.Reference.WritesPerS), ratio(r, "writes_per_s") >= 0.6)
			}
			if name == "writes-32" {
				store, _, _ := strings.Cut(r.Label, "/")
				if w4 := byLabel[store+"/writes-4"]; w4 != nil && w4.Confab.WritesPerS > 0 {
					v := c.WritesPerS / w4.Confab.WritesPerS
					add(r.Label, "32 writers ≥ 0.9× of 4", fmt.Sprintf("%.3f× (%.0f vs %.0f/s)", v, c.WritesPerS, w4.Confab.WritesPerS), v >= 0.9)
				}
			}
		case strings.HasPrefix(name, "latency"):
			add(r.Label, "POST → frame p50 ≤ 2 ms", fmt.Sprintf("%.2f ms", c.Delivery.P50), c.Delivery.P50 <= 2)
			add(r.Label, "POST → frame p99 ≤ 10 ms", fmt.Sprintf("%.2f ms", c.Delivery.P99), c.Delivery.P99 <= 10)
		case strings.HasPrefix(name, "longpoll") && r.Reference != nil:
			add(r.Label, "long-poll p50 ≤ 1.5× SSE's", fmt.Sprintf("%.3f× (%.1f vs %.1f ms)", ratio(r, "delivery_p50"), c.Delivery.P50, r.Reference.Delivery.P50), ratio(r, "delivery_p50") <= 1.5)
		}
		for _, res := range r.columns() {
			add(r.Label, res.Target+": 0 lost, 0 duplicated", fmt.Sprintf("%d lost, %d duplicated", res.Lost, res.Duplicated), res.Lost == 0 && res.Duplicated == 0)
		}
	}
	return out
}
