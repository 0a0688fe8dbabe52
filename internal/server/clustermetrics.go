package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/store"
)

// clusterCollector exports, under etcd's names, what the member knows of
// the cluster when it is scraped: the members it knows of (1) and those
// removed (0), the active alarms, and the auth state's revision.
type clusterCollector struct {
	st     *store.Client
	engine storage.Reader
	self   uint64
}

var (
	knownPeersDesc = prometheus.NewDesc("etcd_network_known_peers",
		"The current number of known peers.", []string{"Local", "Remote"}, nil)
	alarmsDesc = prometheus.NewDesc("etcd_debugging_server_alarms",
		"Alarms for every member in cluster. 1 for 'server_id' label with current ID. 2 for 'alarm_type' label with type of this alarm",
		[]string{"server_id", "alarm_type"}, nil)
	authRevisionDesc = prometheus.NewDesc("etcd_debugging_auth_revision",
		"The current revision of auth store.", nil, nil)
)

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- knownPeersDesc
	ch <- alarmsDesc
	ch <- authRevisionDesc
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	local := fmt.Sprintf("%x", c.self)
	for _, m := range c.st.Members() {
		ch <- prometheus.MustNewConstMetric(knownPeersDesc, prometheus.GaugeValue, 1, local, fmt.Sprintf("%x", m.ID))
	}
	for _, id := range store.RemovedOf(c.engine) {
		ch <- prometheus.MustNewConstMetric(knownPeersDesc, prometheus.GaugeValue, 0, local, fmt.Sprintf("%x", id))
	}
	for _, a := range c.st.Alarms() {
		ch <- prometheus.MustNewConstMetric(alarmsDesc, prometheus.GaugeValue, 1, fmt.Sprintf("%x", a.MemberID), a.Alarm.String())
	}
	ch <- prometheus.MustNewConstMetric(authRevisionDesc, prometheus.GaugeValue, float64(c.st.AuthState().Revision()))
}

// featureMetric is etcd_server_feature_enabled: 1 for each of etcd's
// server feature gates that the configuration turns on, 0 for the others,
// by name and stage, as etcd reports its own whether Cairn acts on the
// gate or not.
func featureMetric(features []config.Feature) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "etcd_server_feature_enabled",
		Help: "Whether or not a feature is enabled. 1 is enabled, 0 is not.",
	}, []string{"name", "stage"})
	for _, f := range features {
		g.WithLabelValues(f.Name, f.Stage).Set(boolFloat(f.Enabled))
	}
	return g
}
