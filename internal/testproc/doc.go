// Package testproc starts and breaks the real processes and network paths
// that the end-to-end, fault and soak checks drive: a child process in its
// own process group with its output in a log file, the built authz-sidecar
// binary, the Better Auth fixture app of test/betterauth, a redis-server on a
// port of its own, and a TCP proxy in front of PostgreSQL that can stall, cut
// and resume.
//
// It is test support: it is imported by tests (test/e2e, test/faults) and by
// the soak and benchmark drivers, never by the product.
//
// Every constructor returns an error and leaves the lifetime to the caller
// (Kill, Stop or Close), so a driver that is not a test can use it. Where a
// test owns the lifetime, the variant named with a T suffix (StartT,
// FreePortT, NewRedisT, NewPGProxyT, StartSidecarT) or Start (StartBetterAuth,
// for NewBetterAuth) takes a testing.TB, fails the test instead of returning
// an error, and releases the resource in t.Cleanup.
package testproc
