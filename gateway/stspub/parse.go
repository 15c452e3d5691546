package stspub

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxPolicySize is the largest policy body read (RFC 8461 §3.3: 64 KiB).
const MaxPolicySize = 64 << 10

// maxMX bounds the mx lines kept.
const maxMX = 100

// Parse reads a policy body (RFC 8461 §3.2).
func Parse(body string) (Policy, error) {
	var p Policy
	if len(body) > MaxPolicySize {
		return p, fmt.Errorf("policy of %d bytes, more than %d", len(body), MaxPolicySize)
	}
	lines := strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
	var version, maxAge bool
	for i, line := range lines {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return p, fmt.Errorf("line %d: no key: value", i+1)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			if i != 0 || v != "STSv1" {
				return p, fmt.Errorf("line %d: version must come first and be STSv1", i+1)
			}
			version = true
		case "mode":
			if v != ModeEnforce && v != ModeTesting && v != ModeNone {
				return p, fmt.Errorf("line %d: mode %q", i+1, v)
			}
			p.Mode = v
		case "mx":
			if len(p.MX) >= maxMX {
				return p, fmt.Errorf("more than %d mx lines", maxMX)
			}
			p.MX = append(p.MX, v)
		case "max_age":
			// §3.2: up to 10 digits, at most 31557600.
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || len(v) > 10 || n > uint64(MaxMaxAge/time.Second) {
				return p, fmt.Errorf("line %d: max_age %q", i+1, v)
			}
			p.MaxAge, maxAge = time.Duration(n)*time.Second, true
		}
	}
	switch {
	case !version:
		return p, errors.New("no version: STSv1 line first")
	case p.Mode == "":
		return p, errors.New("no mode")
	case !maxAge:
		return p, errors.New("no max_age")
	case p.Mode != ModeNone && len(p.MX) == 0:
		return p, errors.New("no mx in mode " + p.Mode)
	}
	return p, nil
}
