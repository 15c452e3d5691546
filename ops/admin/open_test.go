package admin

import (
	"net/http/httptest"
	"testing"

	"moat/ops/metrics"
)

func TestNewOpenMetricsAllowsAnyAddress(t *testing.T) {
	if _, err := New(Options{Address: "0.0.0.0:8025", OpenMetrics: true}); err != nil {
		t.Fatalf("open_metrics on 0.0.0.0 without a token: %v", err)
	}
}

// With OpenMetrics and no token, /metrics and the probes answer a remote
// client with any Host (Prometheus, the kubelet); the API and the status
// page answer only loopback clients.
func TestOpenMetricsWithoutToken(t *testing.T) {
	m := metrics.NewWithOptions(metrics.Options{NoRuntimeCollectors: true})
	s, err := New(Options{Address: "0.0.0.0:8025", OpenMetrics: true, Metrics: m, Queue: newHarness(t, 1).queueAPI()})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	tests := []struct {
		path, remote, host string
		want               int
	}{
		{"/metrics", "10.1.2.3:40000", "10.1.2.9:8025", 200},
		{"/healthz", "10.1.2.3:40000", "10.1.2.9:8025", 200},
		{"/readyz", "10.1.2.3:40000", "10.1.2.9:8025", 200},
		{"/api/queue", "10.1.2.3:40000", "10.1.2.9:8025", 403},
		{"/api/queue", "10.1.2.3:40000", "127.0.0.1:8025", 403},
		{"/", "10.1.2.3:40000", "127.0.0.1:8025", 403},
		{"/api/queue", "127.0.0.1:40000", "127.0.0.1:8025", 200},
		{"/api/queue", "[::1]:40000", "[::1]:8025", 200},
		// A loopback client still needs a loopback Host (DNS rebinding).
		{"/api/queue", "127.0.0.1:40000", "evil.example", 403},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "http://"+tc.host+tc.path, nil)
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("GET %s from %s Host %s: %d, want %d", tc.path, tc.remote, tc.host, w.Code, tc.want)
		}
	}
}

// With OpenMetrics and a token, /metrics is open and the API needs the
// token from every client.
func TestOpenMetricsWithToken(t *testing.T) {
	m := metrics.NewWithOptions(metrics.Options{NoRuntimeCollectors: true})
	s, err := New(Options{Address: "0.0.0.0:8025", Token: "s3cret", OpenMetrics: true, Metrics: m, Queue: newHarness(t, 1).queueAPI()})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/api/queue": 401} {
		r := httptest.NewRequest("GET", "http://10.1.2.9:8025"+path, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
	}
}
