// Package scheduler admits requests to backends: it holds each backend's slots, queues
// requests when every slot is busy, rejects at once when the queue is full, hands a
// freed slot straight to the next waiter, and removes a cancelled request from the queue
// immediately. It declares the Backend interface it drives.
//
// Admission runs in the caller's goroutine under one mutex per backend: a request that
// finds a free slot is dispatched without any goroutine hand-off (the gateway's latency
// budget is tens of microseconds), and a request that waits is woken by the one that
// frees a slot.
//
// It must not import gateway, router or runtime/*.
package scheduler
