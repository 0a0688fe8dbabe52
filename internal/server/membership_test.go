package server

import (
	"net/url"
	"testing"

	"github.com/cairn-kv/cairn/internal/config"
)

func mustURLs(t *testing.T, s ...string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, x := range s {
		u, err := url.Parse(x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

// TestInitialMembersHaveEtcdsIDs: the member and cluster IDs of a
// three-member --initial-cluster are etcd's. The expected values are what
// etcd 3.7.3 itself reported (etcdctl member list and endpoint status)
// for a cluster started with these names, peer URLs and token.
func TestInitialMembersHaveEtcdsIDs(t *testing.T) {
	cfg := &config.Config{
		Name:                     "b",
		InitialAdvertisePeerURLs: mustURLs(t, "http://127.0.0.1:22380"),
		InitialClusterToken:      "tok",
		InitialCluster: map[string][]url.URL{
			"a": mustURLs(t, "http://127.0.0.1:12380"),
			"b": mustURLs(t, "http://127.0.0.1:22380"),
			"c": mustURLs(t, "http://127.0.0.1:32380"),
		},
	}
	members, err := initialMembers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"a": 0xd622127685879b3c, "b": 0x117b9266988c4966, "c": 0xca7a34e16cff9c1b}
	var ids []uint64
	for _, m := range members {
		if m.ID != want[m.Name] {
			t.Errorf("member %s: ID %x, want etcd's %x", m.Name, m.ID, want[m.Name])
		}
		ids = append(ids, m.ID)
	}
	if got := clusterIDOf(ids); got != 0xf7d1d29ba4cd2368 {
		t.Errorf("cluster ID %x, want etcd's f7d1d29ba4cd2368", got)
	}
}

// TestInitialMembersRefusesMisconfiguration: a name missing from
// --initial-cluster, or advertised peer URLs that differ from the ones
// --initial-cluster gives it, stop the member instead of forming a
// cluster of one.
func TestInitialMembersRefusesMisconfiguration(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			Name:                     "a",
			InitialAdvertisePeerURLs: mustURLs(t, "http://127.0.0.1:12380"),
			InitialCluster: map[string][]url.URL{
				"a": mustURLs(t, "http://127.0.0.1:12380"),
				"b": mustURLs(t, "http://127.0.0.1:22380"),
			},
		}
	}
	c := base()
	c.Name = "z"
	if _, err := initialMembers(c); err == nil {
		t.Error("a name missing from --initial-cluster was accepted")
	}
	c = base()
	c.InitialAdvertisePeerURLs = mustURLs(t, "http://127.0.0.1:9999")
	if _, err := initialMembers(c); err == nil {
		t.Error("advertised peer URLs that differ from --initial-cluster were accepted")
	}
	c = base()
	c.InitialCluster["b"] = mustURLs(t, "http://127.0.0.1:12380")
	if _, err := initialMembers(c); err == nil {
		t.Error("two members with the same peer URLs were accepted")
	}
}
