package metrics

import "github.com/prometheus/client_golang/prometheus"

// ClientBound is the bound on the client connections of the proxy's
// listeners (proxy.ClientBound), read on every scrape.
type ClientBound interface {
	// Held is the client connections held now.
	Held() int
	// Limit is the most that may be held at once.
	Limit() int
	// Waited counts the times a listener stopped accepting at the limit
	// until a held connection closed.
	Waited() uint64
	// Queued is the clients waiting in the listeners' accept queues now;
	// ok is false where they cannot be read.
	Queued() (n int, ok bool)
}

// RegisterClientBound registers on reg client_connections,
// client_connections_limit, client_accepts_waited_total and
// client_accept_queue, read from b when scraped, so the hot path pays only
// b's own atomics. Connections held at the limit with clients in the
// accept queue mean the bound holds clients back: a burst, or a limit
// (ulimit -n, the container's memory) too low for the load.
func RegisterClientBound(reg prometheus.Registerer, b ClientBound) {
	reg.MustRegister(
		acceptQueue{b: b, desc: prometheus.NewDesc(namespace+"_client_accept_queue",
			"Clients connected and waiting in the proxy and forward-proxy listeners' accept queues (the kernel's) for the proxy to accept them: above 0 while client_connections is at client_connections_limit, the bound holds them back. Absent where it cannot be read (not Linux).",
			nil, nil)},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "client_connections",
			Help: "Client connections the proxy and forward-proxy listeners hold now, idle keep-alive ones included.",
		}, func() float64 { return float64(b.Held()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "client_connections_limit",
			Help: "Most client connections the proxy and forward-proxy listeners hold at once, together (from the file-descriptor and container memory limits).",
		}, func() float64 { return float64(b.Limit()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "client_accepts_waited_total",
			Help: "Times a listener found the bound full (its connections, and the slot each other listener's idle accept holds) and stopped accepting until a client connection closed; clients that connect meanwhile wait in the kernel's accept queue (client_accept_queue).",
		}, func() float64 { return float64(b.Waited()) }),
	)
}

// acceptQueue is client_accept_queue: a gauge only when b can read it.
type acceptQueue struct {
	b    ClientBound
	desc *prometheus.Desc
}

func (q acceptQueue) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q acceptQueue) Collect(ch chan<- prometheus.Metric) {
	if n, ok := q.b.Queued(); ok {
		ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, float64(n))
	}
}
