package main

import (
	"moat/gateway"
	"moat/ops/admin"
)

// statusListeners is what the status page says of the SMTP listeners.
func statusListeners(ls []gateway.Listener) []admin.ListenerInfo {
	out := make([]admin.ListenerInfo, 0, len(ls))
	for _, l := range ls {
		tls := l.TLS
		if tls == "" {
			tls = "none"
		}
		out = append(out, admin.ListenerInfo{Name: l.Name, Address: l.Address, Mode: l.Mode, TLS: tls})
	}
	return out
}
