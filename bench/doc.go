// Package bench owns sluice's benchmark harnesses. Its first one, Run, measures the
// latency the gateway adds: it starts a fast fake OpenAI engine on loopback, two identical do-nothing fasthttp reverse proxies (the baseline and a noise
// control) and sluice's full pipeline (gateway, router, scheduler and the openai backend,
// wired as cmd/sluice wires them, with a real Prometheus registry), then drives each with
// an open-loop load generator at fixed request rates, streaming and not, and reports
// latency percentiles, the latency each hop adds over calling the engine directly, and
// the ratio of sluice's added latency to the null proxy's. Each hop runs in a process of
// its own (Config.Exec: the process calls ServeHop), as client, gateway and engine do in
// production, or all in the caller's process. Run can add peers, other gateways already
// running in front of the same fake engine. Soak holds many slow streams through sluice's
// process and reports errors, its peak RSS and the goroutines left afterwards.
//
// Latency is measured from each request's scheduled send time, so a target that falls
// behind is charged for the queueing it causes (no coordinated omission). Targets run in
// rotating order over several short rounds so that drift on a shared machine hits them
// alike.
//
// bench may import gateway, router, scheduler and runtime/* to build the pipeline; no
// package of sluice's request path may import bench.
package bench
