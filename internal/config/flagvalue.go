package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The flag.Value types below check a value when the flag package sets it,
// as etcd's do, so that a bad value is a syntax error (exit status 2) with
// etcd's message: `invalid value "x" for flag -name: <reason>`.

// urlsValue is a comma-separated list of URLs, kept as given. The values in
// exceptions are taken as they are: "" for the lists that default to empty,
// "*" for --cors.
type urlsValue struct {
	raw        string
	exceptions []string
}

func (v *urlsValue) String() string { return v.raw }

func (v *urlsValue) Set(s string) error {
	if !slices.Contains(v.exceptions, s) {
		if _, err := parseURLs(s); err != nil {
			return err
		}
	}
	v.raw = s
	return nil
}

// uint32Value is an unsigned 32-bit number, in any base strconv.ParseUint
// accepts with base 0 (so 0x10 is 16).
type uint32Value uint32

func (v *uint32Value) String() string { return strconv.FormatUint(uint64(*v), 10) }

func (v *uint32Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return err
	}
	*v = uint32Value(n)
	return nil
}

// choiceValue is one of a fixed set of words.
type choiceValue struct {
	v      string
	valids []string
}

func (v *choiceValue) String() string { return v.v }

func (v *choiceValue) Set(s string) error {
	if !slices.Contains(v.valids, s) {
		return errors.New("invalid value")
	}
	v.v = s
	return nil
}

// choicesValue is a comma-separated list of words from a fixed set, sorted.
type choicesValue struct {
	vs     []string
	valids []string
}

func (v *choicesValue) String() string { return strings.Join(v.vs, ",") }

func (v *choicesValue) Set(s string) error {
	parts := strings.Split(s, ",")
	for _, p := range parts {
		if !slices.Contains(v.valids, p) {
			return fmt.Errorf("invalid value %q", p)
		}
	}
	slices.Sort(parts)
	v.vs = parts
	return nil
}

// listValue is a comma-separated list of strings, sorted and without
// duplicates, as etcd keeps --discovery-endpoints. Unlike etcd, which takes
// "" as a list of one empty endpoint and then refuses it, an empty value is
// the empty list: the flag's default given explicitly.
type listValue []string

func (v *listValue) String() string { return strings.Join(*v, ",") }

func (v *listValue) Set(s string) error {
	if s == "" {
		*v = nil
		return nil
	}
	parts := strings.Split(s, ",")
	slices.Sort(parts)
	*v = slices.Compact(parts)
	return nil
}

// legacyValue is a flag of etcd 2 that etcd still accepts and ignores, with
// or without a value. It remembers what it was given (bare: "true") so that
// a warning can say it was set.
type legacyValue string

func (v *legacyValue) IsBoolFlag() bool   { return true }
func (v *legacyValue) String() string     { return string(*v) }
func (v *legacyValue) Set(s string) error { *v = legacyValue(s); return nil }
