package config

import (
	"fmt"
	"net"
	"net/url"
)

// Side services that every key's prompts reach, whatever the key's residency policy: the
// cache's engine embedder (it embeds each cacheable question) and the compress stage's
// scoring engine (it scores each compressed prompt). They must run on this box or its
// private network (region local), like the engines a local-only key may use.

// offBoxURL reports whether a URL's host may be off this box: not localhost, a loopback
// or a private address.
func offBoxURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return true
	}
	h := u.Hostname()
	if h == "localhost" {
		return false
	}
	ip := net.ParseIP(h)
	return ip == nil || !(ip.IsLoopback() || ip.IsPrivate())
}

// sideServiceRegion fills in a side service's region (local when its URL is on this
// box or a private address) and checks it: anything but local would send local-only
// keys' prompts off the box.
func sideServiceRegion(path, rawURL string, region *string, bad func(path, format string, args ...any)) {
	if rawURL == "" {
		return
	}
	if *region == "" && !offBoxURL(rawURL) {
		*region = RegionLocal
	}
	switch *region {
	case RegionLocal:
	case "":
		bad(path+".region", "is required: %s is not a loopback or private address; every key's prompts go there, local-only keys' included, so it must run on this box or your network (say region: local if it does)", rawURL)
	default:
		bad(path+".region", fmt.Sprintf("must be local, got %q: every key's prompts go there, local-only keys' included", *region))
	}
}
