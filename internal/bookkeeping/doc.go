// Package bookkeeping joins cost and ledger on the request path: the gateway's Record
// hook (price the request, then journal its ledger record) and the budget stage's view
// of which targets are paid per token. cmd/sluice and the gateway benchmark use it, so
// both run the same code. It must not import gateway, scheduler, router or runtime/*.
package bookkeeping
