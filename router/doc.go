// Package router decides where a request goes: it resolves the model a client names
// (or one of its aliases) to a catalog entry and a backend, and checks that the model
// can do what the request asks (chat or embeddings). Tier choice, residency and budget
// filters grow here.
//
// It must not import gateway, scheduler or runtime/*.
package router
