// Package deploy holds no code: it is the folder of deployment files
// (example configuration, systemd unit, container image, Kubernetes
// manifests, fail2ban filter, Prometheus alerts, Grafana dashboard). Its
// tests parse every file and check the promises the README makes about
// them; deploy/rules has its own tests in package rules.
package deploy
