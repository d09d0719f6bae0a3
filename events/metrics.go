package events

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the real-time core's Prometheus metrics.
type Metrics struct {
	Open             *prometheus.GaugeVec
	Delivered        *prometheus.CounterVec
	Lag              prometheus.Histogram
	NotifySent       prometheus.Counter
	NotifyReceived   prometheus.Counter
	ListenerUp       prometheus.Gauge
	ListenerRestarts prometheus.Counter
	SlowDisconnects  prometheus.Counter
	Evicted          prometheus.Counter
	StreamsEnded     *prometheus.CounterVec
	PollConns        prometheus.Gauge

	// The long-poll children of Open and Delivered, looked up once: a
	// poll would otherwise hash its label on every request.
	openLongPoll      prometheus.Gauge
	deliveredLongPoll prometheus.Counter
}

// NewMetrics registers the metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "confab_subscribers", Help: "Open streams and waiting long-polls on this node, by transport.",
		}, []string{"transport"}),
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "confab_events_delivered_total", Help: "Events written to clients, by transport.",
		}, []string{"transport"}),
		Lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "confab_delivery_lag_seconds",
			Help:    "Time from an event's commit to its write to a client (durable events).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		NotifySent:       prometheus.NewCounter(prometheus.CounterOpts{Name: "confab_notifications_sent_total", Help: "NOTIFY payloads sent."}),
		NotifyReceived:   prometheus.NewCounter(prometheus.CounterOpts{Name: "confab_notifications_received_total", Help: "Notifications received from other nodes."}),
		ListenerUp:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "confab_listener_up", Help: "1 while the LISTEN connection is up."}),
		ListenerRestarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "confab_listener_reconnects_total", Help: "LISTEN connection (re)connects."}),
		SlowDisconnects:  prometheus.NewCounter(prometheus.CounterOpts{Name: "confab_slow_consumer_disconnects_total", Help: "Subscribers disconnected for not keeping up."}),
		Evicted:          prometheus.NewCounter(prometheus.CounterOpts{Name: "confab_streams_evicted_total", Help: "Streams and polls ended because their user opened more than the per-user limit."}),
		StreamsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "confab_streams_ended_total", Help: "Streams served by the writer pool that ended, by reason (client_gone, expired, write_timeout, slow_consumer, evicted, shutdown, error).",
		}, []string{"reason"}),
		PollConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "confab_poll_connections", Help: "Long-pollers' keep-alive connections whose polls are served outside net/http.",
		}),
	}
	m.openLongPoll = m.Open.WithLabelValues(TransportLongPoll)
	m.deliveredLongPoll = m.Delivered.WithLabelValues(TransportLongPoll)
	if reg != nil {
		reg.MustRegister(m.Open, m.Delivered, m.Lag, m.NotifySent, m.NotifyReceived, m.ListenerUp, m.ListenerRestarts, m.SlowDisconnects, m.Evicted, m.StreamsEnded, m.PollConns)
	}
	return m
}
