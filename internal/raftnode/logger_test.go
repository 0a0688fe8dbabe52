package raftnode

import (
	"testing"

	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The raft logger adapter keeps each raft call at its own level with its
// message formatted, and turns raft's Fatal and Panic into zap's, which end
// the caller (here by panicking, through the fatal hook).
func TestZapRaftLoggerLevels(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	var l raft.Logger = &zapRaftLogger{zap.New(core, zap.WithFatalHook(zapcore.WriteThenPanic)).Sugar()}

	l.Debug("d", 1)
	l.Debugf("d%d", 2)
	l.Info("i", 1)
	l.Infof("i%d", 2)
	l.Warning("w", 1)
	l.Warningf("w%d", 2)
	l.Error("e", 1)
	l.Errorf("e%d", 2)
	for _, f := range []func(){
		func() { l.Fatal("f", 1) },
		func() { l.Fatalf("f%d", 2) },
		func() { l.Panic("p", 1) },
		func() { l.Panicf("p%d", 2) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("Fatal/Panic returned instead of ending the caller")
				}
			}()
			f()
		}()
	}

	want := []struct {
		level zapcore.Level
		msg   string
	}{
		{zapcore.DebugLevel, "d1"}, {zapcore.DebugLevel, "d2"},
		{zapcore.InfoLevel, "i1"}, {zapcore.InfoLevel, "i2"},
		{zapcore.WarnLevel, "w1"}, {zapcore.WarnLevel, "w2"},
		{zapcore.ErrorLevel, "e1"}, {zapcore.ErrorLevel, "e2"},
		{zapcore.FatalLevel, "f1"}, {zapcore.FatalLevel, "f2"},
		{zapcore.PanicLevel, "p1"}, {zapcore.PanicLevel, "p2"},
	}
	got := logs.AllUntimed()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		// zap's Sugar joins non-string operands without spaces.
		if got[i].Level != w.level || got[i].Message != w.msg {
			t.Errorf("entry %d = %v %q, want %v %q", i, got[i].Level, got[i].Message, w.level, w.msg)
		}
	}
}
