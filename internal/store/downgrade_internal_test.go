package store

import (
	"errors"
	"testing"
)

// TestParseDowngradeTarget: targets are read as etcd reads them (a full
// semantic version or "major.minor", of which major and minor count); the
// expectations are etcd 3.7.3's answers.
func TestParseDowngradeTarget(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // "" for ErrWrongDowngradeVersionFormat
	}{
		{"3.6", "3.6.0"},
		{"3.6.0", "3.6.0"},
		{"3.6.1", "3.6.0"},
		{"3.6.0-alpha.1", "3.6.0"},
		{"3.6.0+build.7", "3.6.0"},
		{"3.6.0-", "3.6.0"},
		{"03.06", "3.6.0"},
		{"3.8", "3.8.0"},
		{"v3.6", ""},
		{"3", ""},
		{"", ""},
		{"bad", ""},
		{"3.6-alpha", ""},
		{"3.6.0-a_b", ""},
		{"3.6.x", ""},
		{" 3.6", ""},
	} {
		v, err := parseDowngradeTarget(tt.in)
		switch {
		case tt.want == "" && !errors.Is(err, ErrWrongDowngradeVersionFormat):
			t.Errorf("%q: %v, %v; want ErrWrongDowngradeVersionFormat", tt.in, v, err)
		case tt.want != "" && (err != nil || v.String() != tt.want):
			t.Errorf("%q: %v, %v; want %s", tt.in, v, err, tt.want)
		}
	}
}

// TestNextClusterVersion: the leader's decisions, as etcd's version
// monitor makes them for members that all run 3.7.3.
func TestNextClusterVersion(t *testing.T) {
	for _, tt := range []struct {
		name string
		st   versionState
		want string // "" to stay
	}{
		{"never set, no downgrade", versionState{}, ""},
		{"at the servers' minor", versionState{cluster: "3.7.0"}, ""},
		{"downgrade enabled", versionState{target: "3.6.0", enabled: true}, "3.6.0"},
		{"downgraded already", versionState{cluster: "3.6.0", target: "3.6.0", enabled: true}, ""},
		{"target two minors below", versionState{target: "3.5.0", enabled: true}, ""},
		{"cancelled, the target left recorded", versionState{cluster: "3.6.0", target: "3.6.0"}, "3.7.0"},
		{"downgrade cancelled", versionState{cluster: "3.6.0"}, "3.7.0"},
		{"older cluster", versionState{cluster: "3.5.0"}, "3.7.0"},
		{"other major", versionState{cluster: "2.3.0"}, ""},
	} {
		got, ok := nextClusterVersion(tt.st, "3.7.3")
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}
