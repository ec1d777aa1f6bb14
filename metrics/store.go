package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterStoreUp registers store_up on reg: 1 when reachable() reports the
// token store reachable, asked afresh on every scrape, else 0. reachable
// must return within the scrape's patience (a second or so): it bounds its
// own wait.
func RegisterStoreUp(reg prometheus.Registerer, reachable func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "store_up",
		Help: "1 when the token store (file directory or Redis) answers, else 0.",
	}, func() float64 { return b2f(reachable()) }))
}
