package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Latency is a distribution, in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func latency(ns []int64) Latency {
	if len(ns) == 0 {
		return Latency{}
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.5) - 1
		return float64(s[min(max(i, 0), len(s)-1)]) / 1e6
	}
	return Latency{N: len(s), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(s[len(s)-1]) / 1e6}
}

// Result is one target's figures: of one round, or of all its rounds.
type Result struct {
	Target string `json:"target"`
	Round  int    `json:"round,omitempty"`
	// Recipients is the SSE streams plus long-pollers held open.
	Recipients int   `json:"recipients"`
	Messages   int64 `json:"messages"`
	// Scheduled is the sends the writers' pace asked for within the
	// duration (unpaced: the sends attempted); Messages falls short of it
	// when the server did not sustain the rate or a send failed.
	Scheduled      int64   `json:"scheduled"`
	WritesPerS     float64 `json:"writes_per_s"`
	Post           Latency `json:"post"`
	Delivery       Latency `json:"delivery"`
	Deliveries     int64   `json:"deliveries"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	Lost           int64   `json:"lost"`
	Duplicated     int64   `json:"duplicated"`
	// Disordered counts durable events whose position was not after the
	// previous one of the same stream (an equal one is Duplicated).
	Disordered int64            `json:"disordered"`
	Errors     map[string]int64 `json:"errors"`
	// Server CPU seconds from the writers' start to the last delivery,
	// per delivery (or per write when nothing is delivered).
	CPUSeconds       float64 `json:"server_cpu_s"`
	CPUPerDeliveryUS float64 `json:"server_cpu_us_per_delivery"`
	CPUPerWriteUS    float64 `json:"server_cpu_us_per_write"`
	RSSBytes         float64 `json:"server_rss_bytes"`
	// RSSPerRecipientKB is the server's RSS growth from no recipients to
	// all of them open and idle, per recipient.
	RSSPerRecipientKB float64 `json:"server_rss_kb_per_idle_recipient"`

	post, delivery        []int64
	writeSecs, activeSecs float64
	rssIdleDelta          float64
}

func (r *Result) finish() {
	r.Post, r.Delivery = latency(r.post), latency(r.delivery)
	if r.writeSecs > 0 {
		r.WritesPerS = float64(r.Messages) / r.writeSecs
	}
	if r.activeSecs > 0 {
		r.DeliveriesPerS = float64(r.Deliveries) / r.activeSecs
	}
	if r.Deliveries > 0 {
		r.CPUPerDeliveryUS = r.CPUSeconds / float64(r.Deliveries) * 1e6
	}
	if r.Messages > 0 {
		r.CPUPerWriteUS = r.CPUSeconds / float64(r.Messages) * 1e6
	}
	if r.Recipients > 0 {
		r.RSSPerRecipientKB = r.rssIdleDelta / float64(r.Recipients) / 1024
	}
}

// merge sums the rounds of one target.
func merge(name string, rounds []*Result) *Result {
	m := &Result{Target: name, Errors: map[string]int64{}}
	n := 0
	for _, r := range rounds {
		if r.Target != name {
			continue
		}
		n++
		m.Recipients = r.Recipients
		m.Messages += r.Messages
		m.Scheduled += r.Scheduled
		m.Disordered += r.Disordered
		m.Deliveries += r.Deliveries
		m.Lost += r.Lost
		m.Duplicated += r.Duplicated
		for k, v := range r.Errors {
			m.Errors[k] += v
		}
		m.CPUSeconds += r.CPUSeconds
		m.RSSBytes += r.RSSBytes
		m.rssIdleDelta += r.rssIdleDelta
		m.post = append(m.post, r.post...)
		m.delivery = append(m.delivery, r.delivery...)
		m.writeSecs += r.writeSecs
		m.activeSecs += r.activeSecs
	}
	if n == 0 {
		return nil
	}
	m.RSSBytes /= float64(n)
	m.rssIdleDelta /= float64(n)
	m.finish()
	return m
}

// Report is a run: every round, each target's rounds merged, and the
// confab figures as ratios to the reference's.
type Report struct {
	Label     string             `json:"label,omitempty"`
	Command   string             `json:"command,omitempty"`
	Config    *Config            `json:"config"`
	Rounds    []*Result          `json:"rounds"`
	Confab    *Result            `json:"confab"`
	Reference *Result            `json:"reference,omitempty"`
	Ratios    map[string]float64 `json:"ratios,omitempty"`
}

func (rep *Report) summarize(confab, ref string) {
	rep.Confab = merge(confab, rep.Rounds)
	if ref == "" {
		return
	}
	rep.Reference = merge(ref, rep.Rounds)
	c, r := rep.Confab, rep.Reference
	rep.Ratios = map[string]float64{}
	for name, pair := range map[string][2]float64{
		"writes_per_s":       {c.WritesPerS, r.WritesPerS},
		"post_p50":           {c.Post.P50, r.Post.P50},
		"post_p99":           {c.Post.P99, r.Post.P99},
		"delivery_p50":       {c.Delivery.P50, r.Delivery.P50},
		"delivery_p90":       {c.Delivery.P90, r.Delivery.P90},
		"delivery_p99":       {c.Delivery.P99, r.Delivery.P99},
		"deliveries_per_s":   {c.DeliveriesPerS, r.DeliveriesPerS},
		"cpu_per_delivery":   {c.CPUPerDeliveryUS, r.CPUPerDeliveryUS},
		"rss_per_recipient":  {c.RSSPerRecipientKB, r.RSSPerRecipientKB},
		"cpu_per_write":      {c.CPUPerWriteUS, r.CPUPerWriteUS},
		"server_rss":         {c.RSSBytes, r.RSSBytes},
		"delivery_max":       {c.Delivery.Max, r.Delivery.Max},
		"post_p90":           {c.Post.P90, r.Post.P90},
		"post_max":           {c.Post.Max, r.Post.Max},
		"deliveries_counted": {float64(c.Deliveries), float64(r.Deliveries)},
	} {
		if pair[0] > 0 && pair[1] > 0 {
			rep.Ratios[name] = pair[0] / pair[1]
		}
	}
}

// WriteTable prints the report for people.
func (rep *Report) WriteTable(w io.Writer) {
	if rep.Label != "" {
		fmt.Fprintf(w, "%s\n", rep.Label)
	}
	fmt.Fprintln(w, rep.describe())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head, rows := rep.rows()
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
	for _, r := range rep.columns() {
		fmt.Fprintf(w, "errors (%s): %s\n", r.Target, formatErrors(r.Errors))
	}
}

// WriteMarkdown prints the report as a Markdown section.
func (rep *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "### %s\n\n%s\n\n```\n%s\n```\n\n", rep.Label, rep.describe(), rep.Command)
	head, rows := rep.rows()
	fmt.Fprintf(w, "| %s |\n|---%s|\n", strings.Join(head, " | "), strings.Repeat("|--:", len(head)-1))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	for _, r := range rep.columns() {
		fmt.Fprintf(w, "\nErrors (%s): %s", r.Target, formatErrors(r.Errors))
	}
	fmt.Fprint(w, "\n\n")
}

func (rep *Report) describe() string {
	c := rep.Config
	rate := "max"
	if c.Rate > 0 {
		rate = fmt.Sprintf("%g/s", c.Rate)
	}
	return fmt.Sprintf("U=%d S=%d N=%d P=%d W=%d R=%s D=%s, %d round(s) per target, alternating",
		c.Users, c.Group, c.Streams, c.Pollers, c.Writers, rate, c.Duration, c.Rounds)
}

func (rep *Report) columns() []*Result {
	if rep.Reference == nil {
		return []*Result{rep.Confab}
	}
	return []*Result{rep.Confab, rep.Reference}
}

// rows lays the figures out: a row per metric, a column per target, and
// the ratio when there is a reference.
func (rep *Report) rows() (head []string, rows [][]string) {
	cols := rep.columns()
	head = []string{"metric"}
	for _, r := range cols {
		head = append(head, r.Target)
	}
	if len(cols) > 1 {
		head = append(head, "ratio")
	}
	row := func(name, ratio, format string, f func(*Result) float64) {
		line := []string{name}
		for _, r := range cols {
			line = append(line, fmt.Sprintf(format, f(r)))
		}
		if len(cols) > 1 {
			if v, ok := rep.Ratios[ratio]; ok {
				line = append(line, fmt.Sprintf("%.2f", v))
			} else {
				line = append(line, "")
			}
		}
		rows = append(rows, line)
	}
	lat := []struct {
		name string
		f    func(Latency) float64
	}{{"p50", func(l Latency) float64 { return l.P50 }}, {"p90", func(l Latency) float64 { return l.P90 }},
		{"p99", func(l Latency) float64 { return l.P99 }}, {"max", func(l Latency) float64 { return l.Max }}}
	row("messages scheduled", "", "%.0f", func(r *Result) float64 { return float64(r.Scheduled) })
	row("messages (2xx)", "", "%.0f", func(r *Result) float64 { return float64(r.Messages) })
	row("writes/s", "writes_per_s", "%.1f", func(r *Result) float64 { return r.WritesPerS })
	for _, p := range lat {
		row("POST "+p.name+" ms", "post_"+p.name, "%.2f", func(r *Result) float64 { return p.f(r.Post) })
	}
	for _, p := range lat {
		row("delivery "+p.name+" ms", "delivery_"+p.name, "%.2f", func(r *Result) float64 { return p.f(r.Delivery) })
	}
	row("deliveries", "", "%.0f", func(r *Result) float64 { return float64(r.Deliveries) })
	row("deliveries/s", "deliveries_per_s", "%.0f", func(r *Result) float64 { return r.DeliveriesPerS })
	row("server CPU s", "", "%.2f", func(r *Result) float64 { return r.CPUSeconds })
	row("server CPU µs/delivery", "cpu_per_delivery", "%.2f", func(r *Result) float64 { return r.CPUPerDeliveryUS })
	row("server CPU µs/write", "cpu_per_write", "%.1f", func(r *Result) float64 { return r.CPUPerWriteUS })
	row("server RSS MB", "server_rss", "%.1f", func(r *Result) float64 { return r.RSSBytes / (1 << 20) })
	row("RSS KB/idle recipient", "rss_per_recipient", "%.1f", func(r *Result) float64 { return r.RSSPerRecipientKB })
	row("lost", "", "%.0f", func(r *Result) float64 { return float64(r.Lost) })
	row("duplicated", "", "%.0f", func(r *Result) float64 { return float64(r.Duplicated) })
	row("out of order", "", "%.0f", func(r *Result) float64 { return float64(r.Disordered) })
	return head, rows
}

func formatErrors(errs map[string]int64) string {
	if len(errs) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, errs[k]))
	}
	return strings.Join(parts, " ")
}
