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
}

// RegisterClientBound registers on reg client_connections,
// client_connections_limit and client_accepts_waited_total, read from b
// when scraped, so the hot path pays only b's own atomics. Connections
// held at the limit with waited accepts rising mean clients queue in the
// kernel: a burst, or a limit (ulimit -n, the container's memory) too low
// for the load.
func RegisterClientBound(reg prometheus.Registerer, b ClientBound) {
	reg.MustRegister(
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
			Help: "Times a listener found client_connections at client_connections_limit and stopped accepting until a client connection closed; new clients meanwhile wait in the kernel's accept queue.",
		}, func() float64 { return float64(b.Waited()) }),
	)
}
