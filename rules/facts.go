package rules

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// FactGroup is a group of facts that a check contributes to the rules
// without a change to this package: one top-level name in conditions
// (e.g. "urls"), whose value has the type of Zero. A struct type is read
// with member access by its `expr:"..."` tags (urls.hosts), type-checked
// when the rule files are loaded, as the built-in facts are.
//
// The value is computed at most once per message, and only when a rule
// that reads it runs or code asks for it (Engine.Group): by Compute, or
// set beforehand by the check with Facts.SetGroup.
type FactGroup struct {
	Name  string // an identifier not used by another fact
	Stage Stage  // the first stage the facts are known at
	Zero  any    // a value of the group's type; also the value when unknown
	// Compute returns the group's value for f (of Zero's type); nil
	// Compute: only what a check set with Facts.SetGroup, else Zero.
	Compute func(ctx context.Context, f *Facts) any
}

// builtinGroups are the fact groups of this package that use the same
// mechanism as those registered through LoadOptions.FactGroups.
func builtinGroups() []FactGroup {
	return []FactGroup{attachmentsGroup()}
}

// groupEnvName is the env field the group functions take their state from.
const groupEnvName = "__facts"

var groupNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// groupFunc is the expr function that reads group name.
func groupFunc(name string) string { return "__group_" + name }

// compileGroups checks the groups and returns the expr options that make
// them readable: a typed function per group, and a patch that turns the
// identifier into a call of it.
func compileGroups(groups []FactGroup) (map[string]*FactGroup, []expr.Option, error) {
	byName := map[string]*FactGroup{}
	var opts []expr.Option
	for i := range groups {
		g := &groups[i]
		switch {
		case !groupNameRE.MatchString(g.Name):
			return nil, nil, fmt.Errorf("rules: fact group name %q is not a lower-case identifier", g.Name)
		case factStage[g.Name] != (availability{}) || g.Name == "header" || g.Name == "headers":
			return nil, nil, fmt.Errorf("rules: fact group %q has the name of a built-in fact", g.Name)
		case byName[g.Name] != nil:
			return nil, nil, fmt.Errorf("rules: fact group %q registered twice", g.Name)
		case g.Zero == nil:
			return nil, nil, fmt.Errorf("rules: fact group %q has no Zero value (its type)", g.Name)
		case g.Stage < 0 || g.Stage >= numStages:
			return nil, nil, fmt.Errorf("rules: fact group %q has no valid stage", g.Name)
		}
		byName[g.Name] = g
		name := g.Name
		ft := reflect.FuncOf([]reflect.Type{reflect.TypeOf((*state)(nil))}, []reflect.Type{reflect.TypeOf(g.Zero)}, false)
		opts = append(opts, expr.Function(groupFunc(name), func(p ...any) (any, error) {
			return p[0].(*state).group(name)
		}, reflect.Zero(ft).Interface()))
	}
	if len(byName) > 0 {
		opts = append(opts, expr.Patch(groupPatcher{byName}))
	}
	return byName, opts, nil
}

// groupPatcher rewrites a group's name into the call that reads it.
type groupPatcher struct{ groups map[string]*FactGroup }

func (p groupPatcher) Visit(np *ast.Node) {
	id, ok := (*np).(*ast.IdentifierNode)
	if !ok || p.groups[id.Value] == nil {
		return
	}
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: groupFunc(id.Value)},
		Arguments: []ast.Node{&ast.IdentifierNode{Value: groupEnvName}},
	}
	call.Callee.SetLocation(id.Location())
	call.Arguments[0].SetLocation(id.Location())
	ast.Patch(np, call)
}

// groupOf returns the group name a patched call reads, if it is one.
func groupOf(n *ast.CallNode) (string, bool) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		return "", false
	}
	return strings.CutPrefix(id.Value, "__group_")
}

// SetGroup sets the value of a fact group for this message (a check that
// found the facts anyway); rules read it instead of computing it.
func (f *Facts) SetGroup(name string, v any) {
	if f.groups == nil {
		f.groups = map[string]any{}
	}
	f.groups[name] = v
}

// ResetGroups forgets the fact groups' values (a new message).
func (f *Facts) ResetGroups() { f.groups = nil }

// group returns the value of a group, computing it once per message.
func (s *state) group(name string) (any, error) {
	if v, ok := s.facts.groups[name]; ok {
		return v, nil
	}
	g := s.set.groups[name]
	if g == nil {
		return nil, fmt.Errorf("no fact group %q", name)
	}
	v := g.Zero
	if g.Compute != nil {
		if c := g.Compute(s.ctx, s.facts); c != nil {
			v = c
		}
	}
	s.facts.SetGroup(name, v)
	return v, nil
}

// Group returns the value of the fact group name for f through the same
// per-message cache the rules use (e.g. for a classifier that wants the
// facts a check found): computed now if no rule or check did yet.
func (e *Engine) Group(ctx context.Context, f *Facts, name string) (any, error) {
	st := &state{facts: f, ctx: ctx, engine: e, set: e.set.Load()}
	return st.group(name)
}

// attachmentsGroup is the attachments fact: name, type and size of each
// attachment, lower-case (data stage).
func attachmentsGroup() FactGroup {
	return FactGroup{
		Name:  "attachments",
		Stage: StageData,
		Zero:  []attachment(nil),
		Compute: func(_ context.Context, f *Facts) any {
			m := f.Message
			if m == nil {
				return nil
			}
			var out []attachment
			for _, a := range m.Attachments() {
				out = append(out, attachment{Name: strings.ToLower(a.Name), Type: a.ContentType, Size: int(a.Size)})
			}
			return out
		},
	}
}
