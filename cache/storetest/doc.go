// Package storetest is the conformance suite every cache store passes (memory, bbolt,
// Redis), including the tenant-isolation test that drives a real cache stage over the
// store with random tenants and questions.
//
// It imports cache and models only.
package storetest
