package main

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// `moat config show` prints the configuration moat runs with, after its
// defaults, the file and MOAT_* variables, as YAML with moat's key names:
// by default only the keys the file or the environment set, with their
// effective values (as Postfix's postconf -n), with --defaults every key
// (postconf's full listing). A
// field tagged secret:"true" (a password, a password hash) prints as
// masked; files holding secrets are named, never read. The full listing
// loads back as a configuration file to the same settings (a test holds
// it to that), so it can start a new file.

// masked replaces a secret's value.
const masked = "********"

func configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show the effective configuration"}
	var path string
	var all bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the configuration moat runs with (defaults, file, MOAT_* variables), secrets masked",
		Long: "Print the effective configuration as YAML: the built-in defaults, then --config FILE (or the\n" +
			"built-in default of `moat serve` without one), then MOAT_* environment variables. Without\n" +
			"--defaults only the keys the file or the environment set are printed (like postconf -n); with\n" +
			"--defaults every key is (like postconf). Passwords and password hashes print as " + masked + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := decodeConfig(path)
			if err != nil {
				return err
			}
			for _, w := range cfg.envWarnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
			}
			var explicit map[string]bool
			if !all {
				data := []byte(builtinDefault)
				if path != "" {
					if data, err = os.ReadFile(path); err != nil {
						return err
					}
				}
				explicit = explicitKeys(data, os.Environ(), configKeys())
			}
			out, err := showConfig(cfg, explicit)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	show.Flags().StringVar(&path, "config", "", "configuration file (default: the built-in default of moat serve)")
	show.Flags().BoolVar(&all, "defaults", false, "print every key, defaults included")
	cmd.AddCommand(show)
	return cmd
}

// showConfig renders cfg as YAML: every key when explicit is nil, else
// the keys whose path (lower case, dotted: "smtp.max_recipients") or an
// enclosing section's is in explicit.
func showConfig(cfg *Config, explicit map[string]bool) ([]byte, error) {
	var n *yaml.Node
	if explicit == nil {
		n = valueNode(reflect.ValueOf(*cfg), false)
	} else {
		n = explicitNode(reflect.ValueOf(*cfg), "", explicit)
	}
	if n == nil || len(n.Content) == 0 {
		return []byte("# no key is set: every key has its default value\n"), nil
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// explicitKeys are the key paths a configuration sets: every mapping key
// of the file (data; the built-in default when nil) at any depth, and
// every key a MOAT_* variable of environ sets (keys: viper's, keyDelim
// separated).
func explicitKeys(data []byte, environ []string, keys []string) map[string]bool {
	set := map[string]bool{}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) > 0 {
		var walk func(path string, n *yaml.Node)
		walk = func(path string, n *yaml.Node) {
			if n.Kind != yaml.MappingNode {
				return
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := join(path, strings.ToLower(n.Content[i].Value))
				set[p] = true
				walk(p, n.Content[i+1])
			}
		}
		walk("", doc.Content[0])
	}
	byEnv := map[string]string{}
	for _, k := range keys {
		byEnv[envName(k)] = strings.ReplaceAll(k, keyDelim, ".")
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if k, ok := byEnv[name]; ok {
			set[k] = true
		}
	}
	return set
}

// explicitNode is the mapping of the keys of v (a struct, at path) that
// explicit names, or that hold one it names; nil when none.
func explicitNode(v reflect.Value, path string, explicit map[string]bool) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range fieldsOf(v) {
		p := join(path, f.name)
		var n *yaml.Node
		switch {
		case explicit[p] && !isSection(f.v.Type()):
			n = valueNode(f.v, f.secret)
		case isSection(f.v.Type()):
			n = explicitNode(f.v, p, explicit)
		}
		if n != nil {
			m.Content = append(m.Content, keyNode(f.name), n)
		}
	}
	if len(m.Content) == 0 {
		return nil
	}
	return m
}

// field is one key of a struct: its name and value, secret or not.
type field struct {
	name   string
	v      reflect.Value
	secret bool
}

// fieldsOf lists v's keys in declaration order, squashed structs inlined.
func fieldsOf(v reflect.Value) []field {
	var out []field
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		switch {
		case name == "-":
		case name == "" && strings.Contains(opts, "squash"):
			out = append(out, fieldsOf(reflect.Indirect(v.Field(i)))...)
		case name != "":
			out = append(out, field{name, v.Field(i), f.Tag.Get("secret") == "true"})
		}
	}
	return out
}

// isSection: a struct shown key by key (a duration or a time is a value).
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != durationType && t != reflect.TypeOf(time.Time{})
}

func keyNode(k string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k} }

// valueNode renders v; secret masks a non-empty string.
func valueNode(v reflect.Value, secret bool) *yaml.Node {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: formatDuration(time.Duration(v.Int()))}
	case isSection(v.Type()):
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range fieldsOf(v) {
			m.Content = append(m.Content, keyNode(f.name), valueNode(f.v, f.secret))
		}
		return m
	case v.Kind() == reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode}
		if v.Len() == 0 {
			m.Style = yaml.FlowStyle
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			m.Content = append(m.Content, keyNode(fmt.Sprint(k)), valueNode(v.MapIndex(k), secret))
		}
		return m
	case v.Kind() == reflect.Slice || v.Kind() == reflect.Array:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Len() == 0 || !isSection(v.Type().Elem()) {
			s.Style = yaml.FlowStyle
		}
		for i := 0; i < v.Len(); i++ {
			s.Content = append(s.Content, valueNode(v.Index(i), secret))
		}
		return s
	case secret && v.Kind() == reflect.String && v.String() != "":
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: masked}
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v.Interface())}
	}
	return &n
}

// formatDuration writes d as moat's files do: 30s, 5m, 1h30m, 1.5s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
