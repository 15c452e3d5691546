package rules

import (
	"reflect"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// Content rules lower-case the body again and again: `lower(body) matches
// …`, `lower(body + " " + subject) contains …`, one copy per rule. A call
// lower(E) whose argument reads the body and nothing that changes while a
// stage's rules run (score, hits and ratelimit do) is computed once per
// evaluation and shared by every rule that asks for the same expression:
// the set compiles it as a program of its own, and the condition calls
// __memo(__facts, index) instead. The scan of literals (match.go) then also
// sees one string and scans it once.

// memoFunc is the expr function a memoized lower(E) is rewritten into.
const memoFunc = "__memo"

// memo is one shared expression of a set.
type memo struct {
	src    string // its printed form, the key
	prog   *vm.Program
	native func(*state) string // compiled (native.go); nil: the VM only
}

// memoPatcher rewrites the memoizable lower(E) calls of one condition.
type memoPatcher struct{ c *compiler }

func (p memoPatcher) Visit(np *ast.Node) {
	call, ok := (*np).(*ast.BuiltinNode)
	if !ok || call.Name != "lower" || len(call.Arguments) != 1 {
		return
	}
	if !pure(call.Arguments[0]) || !readsBody(call.Arguments[0]) {
		return
	}
	idx, ok := p.c.memoIndex(call)
	if !ok {
		return
	}
	// the rule's inspector reads the facts of the expression it no
	// longer holds from here (stage, needs, explained facts)
	p.c.detached = append(p.c.detached, call)
	repl := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: memoFunc},
		Arguments: []ast.Node{&ast.IdentifierNode{Value: groupEnvName}, &ast.IntegerNode{Value: idx}},
	}
	repl.Callee.SetLocation(call.Location())
	repl.Arguments[0].SetLocation(call.Location())
	repl.Arguments[1].SetLocation(call.Location())
	ast.Patch(np, repl)
}

// memoIndex returns the index of the set's memo for call, compiling it
// the first time; false when it does not compile on its own (the
// condition's own compilation then reports the error where it is).
func (c *compiler) memoIndex(call ast.Node) (int, bool) {
	src := call.String()
	if i, ok := c.memoBySrc[src]; ok {
		return i, true
	}
	prog, err := expr.Compile(src, append(c.exprs[:c.memoOpts:c.memoOpts], expr.AsKind(reflect.String))...)
	if err != nil {
		return 0, false
	}
	if c.memoBySrc == nil {
		c.memoBySrc = map[string]int{}
	}
	c.memoBySrc[src] = len(c.set.memos)
	c.set.memos = append(c.set.memos, &memo{src: src, prog: prog, native: compileNativeString(c.set, prog.Node())})
	return len(c.set.memos) - 1, true
}

// pure reports whether n's value depends only on the message's facts,
// which do not change while one stage's rules run.
func pure(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.StringNode:
		return true
	case *ast.IdentifierNode:
		if n.Value == groupEnvName {
			return true
		}
		_, fact := factStage[n.Value]
		return fact && n.Value != "score" && n.Value != "hits"
	case *ast.MemberNode:
		_, named := n.Property.(*ast.StringNode)
		return named && pure(n.Node)
	case *ast.BinaryNode:
		return n.Operator == "+" && pure(n.Left) && pure(n.Right)
	case *ast.BuiltinNode:
		switch n.Name {
		case "lower", "upper", "trim":
			return allPure(n.Arguments)
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if ok && (id.Value == "header" || strings.HasPrefix(id.Value, "__group_")) {
			return allPure(n.Arguments)
		}
	}
	return false
}

func allPure(ns []ast.Node) bool {
	for _, a := range ns {
		if !pure(a) {
			return false
		}
	}
	return true
}

// readsBody reports whether n reads the body fact.
func readsBody(n ast.Node) bool {
	found := false
	ast.Find(n, func(x ast.Node) bool {
		if id, ok := x.(*ast.IdentifierNode); ok && id.Value == "body" {
			found = true
		}
		return found
	})
	return found
}

// memo returns the value of the set's memo i for this evaluation.
func (s *state) memo(i int) (string, error) {
	if s.memos == nil {
		s.memos = make([]*string, len(s.set.memos))
	}
	if v := s.memos[i]; v != nil {
		return *v, nil
	}
	m := s.set.memos[i]
	if m.native != nil {
		if v, ok := runNativeString(m.native, s); ok {
			s.memos[i] = &v
			return v, nil
		}
	}
	out, err := vm.Run(m.prog, &s.env)
	if err != nil {
		return "", err
	}
	v, _ := out.(string)
	s.memos[i] = &v
	return v, nil
}
