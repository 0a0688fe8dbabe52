package server

import "testing"

func TestGodebugHTTP2(t *testing.T) {
	for v, want := range map[string]bool{
		"":                            false,
		"http2debug=0":                false,
		"http2client=0":               false,
		"http2debug=1":                true,
		"http2debug=2":                true,
		"madvdontneed=1,http2debug=2": true,
		"http2debug=1,http2server=0":  true,
	} {
		if got := godebugHTTP2(v); got != want {
			t.Errorf("godebugHTTP2(%q) = %v, want %v", v, got, want)
		}
	}
}
