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
	fmt.Fprint(stdout, "## Targets\n\n| scenario | target | measured | margin | met |\n|---|---|--:|---|:-:|\n")
	for _, t := range judge(reps) {
		met := "yes"
		if !t.met {
			met = "**no**"
		}
		fmt.Fprintf(stdout, "| %s | %s | %s | %s | %s |\n", t.scenario, t.target, t.measured, t.margin, met)
	}
	fmt.Fprint(stdout, "\n## Scenarios\n\n")
	for _, rep := range reps {
		rep.WriteMarkdown(stdout)
	}
	return nil
}

// verdict is one target of one scenario: what was measured, and by how much
// it met or missed the target.
type verdict struct {
	scenario, target, measured, margin string
	met                                bool
}

// atMost judges value against an upper limit.
func atMost(scenario, target, measured string, value, limit float64) verdict {
	if value <= limit {
		return verdict{scenario, target, measured, fmt.Sprintf("met, %.0f%% under", pct(limit-value, limit)), true}
	}
	return verdict{scenario, target, measured, fmt.Sprintf("missed, %.0f%% over", pct(value-limit, limit)), false}
}

// atLeast judges value against a lower limit.
func atLeast(scenario, target, measured string, value, limit float64) verdict {
	if value >= limit {
		return verdict{scenario, target, measured, fmt.Sprintf("met, %.0f%% above", pct(value-limit, limit)), true}
	}
	return verdict{scenario, target, measured, fmt.Sprintf("missed, %.0f%% short", pct(limit-value, limit)), false}
}

func pct(d, of float64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * d / of
}

// judge checks each report against the targets of its scenario. A report's
// label names its scenario as "store/name"; the name's prefix picks the
// targets.
func judge(reps []*Report) []verdict {
	byLabel := map[string]*Report{}
	for _, r := range reps {
		byLabel[r.Label] = r
	}
	var out []verdict
	ratio := func(r *Report, key string) float64 { return r.Ratios[key] }
	for _, r := range reps {
		_, name, _ := strings.Cut(r.Label, "/")
		c, ref := r.Confab, r.Reference
		add := func(v verdict) { out = append(out, v) }
		ratioOf := func(key, unit string, cv, rv float64) string {
			return fmt.Sprintf("%.3f× (%.1f vs %.1f %s)", ratio(r, key), cv, rv, unit)
		}
		switch {
		case strings.HasPrefix(name, "post") && ref != nil:
			add(atMost(r.Label, fmt.Sprintf("POST p50 to a %d-member group ≤ 1.5× to a %s-member one's", r.Config.Group, strings.TrimPrefix(r.Config.Ref, "group:")),
				ratioOf("post_p50", "ms", c.Post.P50, ref.Post.P50), ratio(r, "post_p50"), 1.5))
		case strings.HasPrefix(name, "fanout") && ref != nil:
			add(atMost(r.Label, "delivery p50 ≤ 1.2× reference", ratioOf("delivery_p50", "ms", c.Delivery.P50, ref.Delivery.P50), ratio(r, "delivery_p50"), 1.2))
			add(atMost(r.Label, "delivery p99 ≤ 1.3× reference", ratioOf("delivery_p99", "ms", c.Delivery.P99, ref.Delivery.P99), ratio(r, "delivery_p99"), 1.3))
			add(atMost(r.Label, "server CPU per delivery ≤ 1.25× reference", ratioOf("cpu_per_delivery", "µs", c.CPUPerDeliveryUS, ref.CPUPerDeliveryUS), ratio(r, "cpu_per_delivery"), 1.25))
			if r.Config.Rate > 0 {
				add(atLeast(r.Label, fmt.Sprintf("every message sent at %g msg/s", r.Config.Rate),
					fmt.Sprintf("%d of %d acknowledged (%.1f/s)", c.Messages, c.Scheduled, c.WritesPerS), float64(c.Messages), float64(c.Scheduled)))
			}
		case strings.HasPrefix(name, "idle"):
			m := fmt.Sprintf("%.1f KB", c.RSSPerRecipientKB)
			if ref != nil {
				m += fmt.Sprintf(" (reference %.1f KB)", ref.RSSPerRecipientKB)
			}
			add(atMost(r.Label, "RSS ≤ 8 KB per idle stream", m, c.RSSPerRecipientKB, 8))
			add(atMost(r.Label, "stretch: RSS ≤ 5 KB per idle stream", m, c.RSSPerRecipientKB, 5))
			// 100,000 streams at this cost, above the empty server.
			projected := c.RSSPerRecipientKB * 100000 / (1 << 20)
			add(atMost(r.Label, "100,000 idle streams projected < 1 GB", fmt.Sprintf("%.2f GB", projected), projected, 1))
		case strings.HasPrefix(name, "writes"):
			add(atLeast(r.Label, "≥ 5,000 messages/s", fmt.Sprintf("%.0f/s", c.WritesPerS), c.WritesPerS, 5000))
			if ref != nil {
				add(atLeast(r.Label, "≥ 0.6× the send's SQL without HTTP", ratioOf("writes_per_s", "/s", c.WritesPerS, ref.WritesPerS), ratio(r, "writes_per_s"), 0.6))
			}
			if name == "writes-32" {
				store, _, _ := strings.Cut(r.Label, "/")
				if w4 := byLabel[store+"/writes-4"]; w4 != nil && w4.Confab.WritesPerS > 0 {
					v := c.WritesPerS / w4.Confab.WritesPerS
					add(atLeast(r.Label, "32 writers ≥ 0.9× of 4", fmt.Sprintf("%.3f× (%.0f vs %.0f/s)", v, c.WritesPerS, w4.Confab.WritesPerS), v, 0.9))
				}
			}
		case strings.HasPrefix(name, "latency") && ref != nil:
			add(atMost(r.Label, "POST → frame p50 ≤ 1.5× reference's publish → frame", ratioOf("delivery_p50", "ms", c.Delivery.P50, ref.Delivery.P50), ratio(r, "delivery_p50"), 1.5))
		case strings.HasPrefix(name, "longpoll") && ref != nil && r.Config.Ref == "sse" && !strings.HasPrefix(r.Label, "reference/"):
			add(atMost(r.Label, "long-poll p50 ≤ 1.5× SSE's", ratioOf("delivery_p50", "ms", c.Delivery.P50, ref.Delivery.P50), ratio(r, "delivery_p50"), 1.5))
			add(atMost(r.Label, "long-poll server CPU per delivery ≤ 2× SSE's", ratioOf("cpu_per_delivery", "µs", c.CPUPerDeliveryUS, ref.CPUPerDeliveryUS), ratio(r, "cpu_per_delivery"), 2))
		}
		for _, res := range r.columns() {
			bad := res.Lost + res.Duplicated + res.Disordered
			v := verdict{r.Label, res.Target + ": 0 lost, 0 duplicated",
				fmt.Sprintf("%d lost, %d duplicated, %d out of order", res.Lost, res.Duplicated, res.Disordered), "met", bad == 0}
			if bad != 0 {
				v.margin = fmt.Sprintf("missed by %d", bad)
			}
			add(v)
		}
	}
	return out
}
