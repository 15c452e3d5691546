package rules

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// A rule pack is mostly small conditions: `html.invisible`,
// `text.words < 20 && urls.count > 0`, `spf.result == "softfail"`. The
// expr VM runs each as a program: a stack of interfaces, fields found by
// reflection and boxed, arguments gathered into slices, a recovered
// frame per run. That is a few hundred nanoseconds a rule, which eighty
// rules turn into the largest part of what the pack costs a message.
//
// So a condition is also compiled, from the typed syntax tree the expr
// checker and optimizer leave, into Go closures that read the facts
// directly: one typed closure per node, no interface on the way for
// booleans, numbers and strings. Only the node kinds and operators below
// are compiled; a condition with anything else (ratelimit, arithmetic
// other than + and -, ternaries, optional chaining, …) keeps the VM. The
// closures follow the VM's semantics (ints and floats compare as floats,
// len counts runes, `in` over a slice compares each element); where they
// cannot answer, a nil pointer or a function that fails, they give up
// and the engine asks the VM, whose answer and error are the reference.
// DiffCompiled checks the two against each other; the tests run it over
// the shipped pack and a corpus.

// native is a compiled node: kind says which of the closures is set
// (reflect.Invalid: v, for values other than bool, int, float and string).
type native struct {
	kind reflect.Kind
	b    func(*state) bool
	i    func(*state) int
	f    func(*state) float64
	s    func(*state) string
	v    func(*state) reflect.Value
}

// giveUp is panicked by a closure that cannot answer; runNative
// recovers it.
type giveUp struct{ err error }

var errNilValue = errors.New("nil value")

// runNative runs a compiled condition; ok false when it gave up (or
// panicked), and the VM must answer.
func runNative(c func(*state) bool, s *state) (matched, ok bool) {
	defer func() {
		if x := recover(); x != nil {
			matched, ok = false, false
		}
	}()
	return c(s), true
}

// runNativeString runs a compiled string expression (a memo); ok false
// when it gave up.
func runNativeString(c func(*state) string, s *state) (v string, ok bool) {
	defer func() {
		if x := recover(); x != nil {
			v, ok = "", false
		}
	}()
	return c(s), true
}

// nativeCompiler compiles the nodes of one condition.
type nativeCompiler struct {
	set *Set
}

// compileNative returns the closure of a condition's root, or nil.
func compileNative(set *Set, root ast.Node) func(*state) bool {
	n, ok := (&nativeCompiler{set: set}).node(root)
	if !ok || n.kind != reflect.Bool {
		return nil
	}
	return n.b
}

// compileNativeString returns the closure of a string expression, or
// nil.
func compileNativeString(set *Set, root ast.Node) func(*state) string {
	n, ok := (&nativeCompiler{set: set}).node(root)
	if !ok || n.kind != reflect.String {
		return nil
	}
	return n.s
}

var envType = reflect.TypeOf(env{})

func kindOf(t reflect.Type) (reflect.Kind, bool) {
	if t == nil {
		return reflect.Invalid, false
	}
	switch k := t.Kind(); k {
	case reflect.Bool, reflect.String, reflect.Float64:
		return k, true
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Int16, reflect.Int8:
		return reflect.Int, true
	case reflect.Interface, reflect.Float32, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr, reflect.Func:
		return reflect.Invalid, false
	}
	return reflect.Invalid, true
}

// fromValue makes a native of type t from a closure yielding a
// reflect.Value of that type.
func fromValue(t reflect.Type, get func(*state) reflect.Value) (native, bool) {
	k, ok := kindOf(t)
	if !ok {
		return native{}, false
	}
	switch k {
	case reflect.Bool:
		return native{kind: k, b: func(s *state) bool { return get(s).Bool() }}, true
	case reflect.String:
		return native{kind: k, s: func(s *state) string { return get(s).String() }}, true
	case reflect.Float64:
		return native{kind: k, f: func(s *state) float64 { return get(s).Float() }}, true
	case reflect.Int:
		return native{kind: k, i: func(s *state) int { return int(get(s).Int()) }}, true
	}
	return native{kind: reflect.Invalid, v: get}, true
}

// float returns a numeric n as a float closure.
func (n native) float() (func(*state) float64, bool) {
	switch n.kind {
	case reflect.Float64:
		return n.f, true
	case reflect.Int:
		return func(s *state) float64 { return float64(n.i(s)) }, true
	}
	return nil, false
}

func constant(v any) (native, bool) {
	switch x := v.(type) {
	case bool:
		return native{kind: reflect.Bool, b: func(*state) bool { return x }}, true
	case string:
		return native{kind: reflect.String, s: func(*state) string { return x }}, true
	case int:
		return native{kind: reflect.Int, i: func(*state) int { return x }}, true
	case float64:
		return native{kind: reflect.Float64, f: func(*state) float64 { return x }}, true
	}
	return native{}, false
}

func (c *nativeCompiler) node(n ast.Node) (native, bool) {
	switch n := n.(type) {
	case *ast.BoolNode:
		return constant(n.Value)
	case *ast.StringNode:
		return constant(n.Value)
	case *ast.IntegerNode:
		if k, _ := kindOf(n.Type()); k == reflect.Float64 {
			return constant(float64(n.Value))
		}
		return constant(n.Value)
	case *ast.FloatNode:
		return constant(n.Value)
	case *ast.ConstantNode:
		return constant(n.Value)
	case *ast.IdentifierNode:
		return c.identifier(n)
	case *ast.MemberNode:
		return c.member(n)
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.CallNode:
		return c.call(n)
	case *ast.BuiltinNode:
		return c.builtin(n)
	case *ast.PointerNode:
		if n.Name != "" {
			return native{}, false
		}
		return fromValue(n.Type(), func(s *state) reflect.Value { return s.elems[len(s.elems)-1] })
	}
	return native{}, false
}

// field finds the field an expr name reads in struct type t: its `expr`
// tag, else its Go name.
func field(t reflect.Type, name string) ([]int, reflect.Type, bool) {
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		tag, hasTag := f.Tag.Lookup("expr")
		if tag == "-" {
			continue
		}
		if (hasTag && tag == name) || (!hasTag && f.Name == name) {
			return f.Index, f.Type, true
		}
	}
	return nil, nil, false
}

func (c *nativeCompiler) identifier(n *ast.IdentifierNode) (native, bool) {
	if _, fact := factStage[n.Value]; !fact {
		return native{}, false
	}
	idx, t, ok := field(envType, n.Value)
	if !ok || t.Kind() == reflect.Func {
		return native{}, false
	}
	if len(idx) == 1 {
		i := idx[0]
		return fromValue(t, func(s *state) reflect.Value { return reflect.ValueOf(&s.env).Elem().Field(i) })
	}
	return fromValue(t, func(s *state) reflect.Value { return reflect.ValueOf(&s.env).Elem().FieldByIndex(idx) })
}

func (c *nativeCompiler) member(n *ast.MemberNode) (native, bool) {
	prop, ok := n.Property.(*ast.StringNode)
	if !ok || n.Optional || n.Method {
		return native{}, false
	}
	base, ok := c.node(n.Node)
	if !ok || base.kind != reflect.Invalid {
		return native{}, false
	}
	t := n.Node.Type()
	ptr := t.Kind() == reflect.Pointer
	if ptr {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return native{}, false
	}
	idx, ft, ok := field(t, prop.Value)
	if !ok {
		return native{}, false
	}
	get := base.v
	return fromValue(ft, func(s *state) reflect.Value {
		v := get(s)
		if ptr {
			if v.IsNil() {
				panic(giveUp{errNilValue})
			}
			v = v.Elem()
		}
		if len(idx) == 1 {
			return v.Field(idx[0])
		}
		return v.FieldByIndex(idx)
	})
}

func (c *nativeCompiler) unary(n *ast.UnaryNode) (native, bool) {
	x, ok := c.node(n.Node)
	if !ok {
		return native{}, false
	}
	switch n.Operator {
	case "!", "not":
		if x.kind == reflect.Bool {
			return native{kind: reflect.Bool, b: func(s *state) bool { return !x.b(s) }}, true
		}
	case "-":
		switch x.kind {
		case reflect.Int:
			return native{kind: reflect.Int, i: func(s *state) int { return -x.i(s) }}, true
		case reflect.Float64:
			return native{kind: reflect.Float64, f: func(s *state) float64 { return -x.f(s) }}, true
		}
	}
	return native{}, false
}

func (c *nativeCompiler) binary(n *ast.BinaryNode) (native, bool) {
	l, ok := c.node(n.Left)
	if !ok {
		return native{}, false
	}
	if n.Operator == "in" {
		return c.in(l, n.Right)
	}
	r, ok := c.node(n.Right)
	if !ok {
		return native{}, false
	}
	boolean := func(f func(*state) bool) (native, bool) { return native{kind: reflect.Bool, b: f}, true }
	switch n.Operator {
	case "&&", "and":
		if l.kind == reflect.Bool && r.kind == reflect.Bool {
			return boolean(func(s *state) bool { return l.b(s) && r.b(s) })
		}
	case "||", "or":
		if l.kind == reflect.Bool && r.kind == reflect.Bool {
			return boolean(func(s *state) bool { return l.b(s) || r.b(s) })
		}
	case "==", "!=":
		eq, ok := equal(l, r)
		if !ok {
			return native{}, false
		}
		if n.Operator == "!=" {
			return boolean(func(s *state) bool { return !eq(s) })
		}
		return boolean(eq)
	case "<", "<=", ">", ">=":
		return compare(n.Operator, l, r)
	case "contains", "startsWith", "endsWith":
		if l.kind != reflect.String || r.kind != reflect.String {
			return native{}, false
		}
		f := map[string]func(string, string) bool{"contains": strings.Contains, "startsWith": strings.HasPrefix, "endsWith": strings.HasSuffix}[n.Operator]
		return boolean(func(s *state) bool { return f(l.s(s), r.s(s)) })
	case "+":
		switch {
		case l.kind == reflect.String && r.kind == reflect.String:
			return native{kind: reflect.String, s: func(s *state) string { return l.s(s) + r.s(s) }}, true
		case l.kind == reflect.Int && r.kind == reflect.Int:
			return native{kind: reflect.Int, i: func(s *state) int { return l.i(s) + r.i(s) }}, true
		}
		if lf, rf, ok := floats(l, r); ok {
			return native{kind: reflect.Float64, f: func(s *state) float64 { return lf(s) + rf(s) }}, true
		}
	case "-":
		if l.kind == reflect.Int && r.kind == reflect.Int {
			return native{kind: reflect.Int, i: func(s *state) int { return l.i(s) - r.i(s) }}, true
		}
		if lf, rf, ok := floats(l, r); ok {
			return native{kind: reflect.Float64, f: func(s *state) float64 { return lf(s) - rf(s) }}, true
		}
	}
	return native{}, false
}

func floats(l, r native) (func(*state) float64, func(*state) float64, bool) {
	lf, ok1 := l.float()
	rf, ok2 := r.float()
	return lf, rf, ok1 && ok2
}

// equal compares two values of the kinds expr's Equal treats alike:
// numbers (an int and a float as floats), strings, booleans.
func equal(l, r native) (func(*state) bool, bool) {
	switch {
	case l.kind == reflect.String && r.kind == reflect.String:
		return func(s *state) bool { return l.s(s) == r.s(s) }, true
	case l.kind == reflect.Bool && r.kind == reflect.Bool:
		return func(s *state) bool { return l.b(s) == r.b(s) }, true
	case l.kind == reflect.Int && r.kind == reflect.Int:
		return func(s *state) bool { return l.i(s) == r.i(s) }, true
	}
	if lf, rf, ok := floats(l, r); ok {
		return func(s *state) bool { return lf(s) == rf(s) }, true
	}
	return nil, false
}

func compare(op string, l, r native) (native, bool) {
	var lt, le func(*state) bool
	switch {
	case l.kind == reflect.String && r.kind == reflect.String:
		lt = func(s *state) bool { return l.s(s) < r.s(s) }
		le = func(s *state) bool { return l.s(s) <= r.s(s) }
		if op == ">" || op == ">=" {
			lt = func(s *state) bool { return l.s(s) > r.s(s) }
			le = func(s *state) bool { return l.s(s) >= r.s(s) }
		}
	case l.kind == reflect.Int && r.kind == reflect.Int:
		lt = func(s *state) bool { return l.i(s) < r.i(s) }
		le = func(s *state) bool { return l.i(s) <= r.i(s) }
		if op == ">" || op == ">=" {
			lt = func(s *state) bool { return l.i(s) > r.i(s) }
			le = func(s *state) bool { return l.i(s) >= r.i(s) }
		}
	default:
		lf, rf, ok := floats(l, r)
		if !ok {
			return native{}, false
		}
		lt = func(s *state) bool { return lf(s) < rf(s) }
		le = func(s *state) bool { return lf(s) <= rf(s) }
		if op == ">" || op == ">=" {
			lt = func(s *state) bool { return lf(s) > rf(s) }
			le = func(s *state) bool { return lf(s) >= rf(s) }
		}
	}
	if op == "<" || op == ">" {
		return native{kind: reflect.Bool, b: lt}, true
	}
	return native{kind: reflect.Bool, b: le}, true
}

// in compiles `x in coll`: a constant set of strings (what the optimizer
// makes of a literal list), or a list of strings.
func (c *nativeCompiler) in(l native, right ast.Node) (native, bool) {
	if l.kind != reflect.String {
		return native{}, false
	}
	if k, ok := right.(*ast.ConstantNode); ok {
		set, ok := k.Value.(map[string]struct{})
		if !ok {
			return native{}, false
		}
		return native{kind: reflect.Bool, b: func(s *state) bool { _, in := set[l.s(s)]; return in }}, true
	}
	r, ok := c.node(right)
	if !ok || r.kind != reflect.Invalid || right.Type() != reflect.TypeOf([]string(nil)) {
		return native{}, false
	}
	return native{kind: reflect.Bool, b: func(s *state) bool {
		v := r.v(s)
		needle := l.s(s)
		for i := 0; i < v.Len(); i++ {
			if v.Index(i).String() == needle {
				return true
			}
		}
		return false
	}}, true
}

func (c *nativeCompiler) call(n *ast.CallNode) (native, bool) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		return native{}, false
	}
	args := make([]native, 0, len(n.Arguments))
	for _, a := range n.Arguments {
		if x, ok := a.(*ast.IdentifierNode); ok && x.Value == groupEnvName {
			continue // the state, which every closure has
		}
		an, ok := c.node(a)
		if !ok {
			return native{}, false
		}
		args = append(args, an)
	}
	intArg := func(i int) (int, bool) {
		x, ok := n.Arguments[i].(*ast.IntegerNode)
		if !ok {
			return 0, false
		}
		return x.Value, true
	}
	if group, ok := groupOf(n); ok {
		if len(args) != 0 {
			return native{}, false
		}
		gi, ok := c.set.groupIndex[group]
		if !ok {
			return native{}, false
		}
		return fromValue(n.Type(), func(s *state) reflect.Value {
			if gi < len(s.groupVals) && s.groupVals[gi].IsValid() {
				return s.groupVals[gi]
			}
			v, err := s.group(group)
			if err != nil {
				panic(giveUp{err})
			}
			rv := reflect.ValueOf(v)
			if !rv.IsValid() {
				panic(giveUp{errNilValue})
			}
			if s.groupVals == nil {
				s.groupVals = make([]reflect.Value, len(s.set.groupIndex))
			}
			s.groupVals[gi] = rv
			return rv
		})
	}
	switch id.Value {
	case matchFunc: // __matches(__facts, text, index)
		idx, ok := intArg(2)
		if !ok || len(args) != 2 || args[0].kind != reflect.String {
			return native{}, false
		}
		text := args[0].s
		return native{kind: reflect.Bool, b: func(s *state) bool { return s.match(text(s), idx) }}, true
	case memoFunc: // __memo(__facts, index)
		idx, ok := intArg(1)
		if !ok {
			return native{}, false
		}
		return native{kind: reflect.String, s: func(s *state) string {
			v, err := s.memo(idx)
			if err != nil {
				panic(giveUp{err})
			}
			return v
		}}, true
	case "header":
		if len(args) == 1 && args[0].kind == reflect.String {
			name := args[0].s
			return native{kind: reflect.String, s: func(s *state) string { return s.header(name(s)) }}, true
		}
	case "in_list":
		if len(args) == 2 && args[0].kind == reflect.String && args[1].kind == reflect.String {
			name, value := args[0].s, args[1].s
			return native{kind: reflect.Bool, b: func(s *state) bool { return s.set.inList(name(s), value(s)) }}, true
		}
	case "cidr":
		if len(args) == 2 && args[0].kind == reflect.String && args[1].kind == reflect.String {
			ip, prefix := args[0].s, args[1].s
			return native{kind: reflect.Bool, b: func(s *state) bool {
				in, err := cidrContains(ip(s), prefix(s))
				if err != nil {
					panic(giveUp{err})
				}
				return in
			}}, true
		}
	}
	return native{}, false
}

func (c *nativeCompiler) builtin(n *ast.BuiltinNode) (native, bool) {
	if n.Map != nil || n.Threshold != nil {
		return native{}, false
	}
	switch n.Name {
	case "lower", "upper":
		if len(n.Arguments) != 1 {
			return native{}, false
		}
		x, ok := c.node(n.Arguments[0])
		if !ok || x.kind != reflect.String {
			return native{}, false
		}
		f := strings.ToLower
		if n.Name == "upper" {
			f = strings.ToUpper
		}
		return native{kind: reflect.String, s: func(s *state) string { return f(x.s(s)) }}, true
	case "len":
		if len(n.Arguments) != 1 {
			return native{}, false
		}
		x, ok := c.node(n.Arguments[0])
		if !ok {
			return native{}, false
		}
		if x.kind == reflect.String {
			return native{kind: reflect.Int, i: func(s *state) int { return utf8.RuneCountInString(x.s(s)) }}, true
		}
		if k := n.Arguments[0].Type().Kind(); x.kind != reflect.Invalid || (k != reflect.Slice && k != reflect.Array) {
			return native{}, false
		}
		return native{kind: reflect.Int, i: func(s *state) int { return listValue(x.v(s)).Len() }}, true
	case "any", "all", "none":
		if len(n.Arguments) != 2 {
			return native{}, false
		}
		coll, ok := c.node(n.Arguments[0])
		if !ok || coll.kind != reflect.Invalid {
			return native{}, false
		}
		if k := n.Arguments[0].Type().Kind(); k != reflect.Slice && k != reflect.Array {
			return native{}, false
		}
		p, ok := n.Arguments[1].(*ast.PredicateNode)
		if !ok {
			return native{}, false
		}
		pred, ok := c.node(p.Node)
		if !ok || pred.kind != reflect.Bool {
			return native{}, false
		}
		// any stops at the first true, all and none at the first
		// that decides them
		stopOn := n.Name == "any" || n.Name == "none"
		result := n.Name == "any"
		return native{kind: reflect.Bool, b: func(s *state) bool {
			v := listValue(coll.v(s))
			for i := 0; i < v.Len(); i++ {
				s.elems = append(s.elems, v.Index(i))
				got := pred.b(s)
				s.elems = s.elems[:len(s.elems)-1]
				if got == stopOn {
					return result
				}
			}
			return !result
		}}, true
	}
	return native{}, false
}

// listValue checks that v is a list the VM would iterate.
func listValue(v reflect.Value) reflect.Value {
	if k := v.Kind(); k != reflect.Slice && k != reflect.Array {
		panic(giveUp{fmt.Errorf("not a list: %s", k)})
	}
	return v
}

// CompiledReport is what DiffCompiled found for one stage and message.
type CompiledReport struct {
	Compiled []string // rules whose condition is compiled
	VMOnly   []string // rules the VM alone answers
	GaveUp   []string // compiled rules whose closures left these facts to the VM
	Differ   []string // "rule: compiled true, VM false"
}

// DiffCompiled answers every compiled condition of stage over f both
// ways, as closures and on the VM, and reports where they differ: the
// check that keeps the two in step (tests run it over the shipped pack
// and a corpus). It changes nothing: no rule acts, and a VM-only rule
// (ratelimit among them) is not run.
func (e *Engine) DiffCompiled(ctx context.Context, stage Stage, f *Facts) CompiledReport {
	var rep CompiledReport
	set := e.set.Load()
	if stage < 0 || stage >= numStages {
		return rep
	}
	st := newState(ctx, e, set, f)
	var machine vm.VM
	for _, r := range set.stages[stage] {
		if r.native == nil {
			rep.VMOnly = append(rep.VMOnly, r.Name)
			continue
		}
		rep.Compiled = append(rep.Compiled, r.Name)
		st.rule = r
		st.fill(r.needs)
		got, ok := runNative(r.native, st)
		out, err := runSafe(&machine, r.prog, &st.env)
		want, _ := out.(bool)
		switch {
		case !ok:
			rep.GaveUp = append(rep.GaveUp, r.Name)
		case err != nil:
			rep.Differ = append(rep.Differ, fmt.Sprintf("%s: compiled %t, VM error %v", r.Name, got, err))
		case got != want:
			rep.Differ = append(rep.Differ, fmt.Sprintf("%s: compiled %t, VM %t", r.Name, got, want))
		}
	}
	// the shared lower(E) expressions (memo.go), which both ways read
	st.fill(needBody | needMalformed | needAddresses)
	for _, m := range set.memos {
		if m.native == nil {
			continue
		}
		got, ok := runNativeString(m.native, st)
		out, err := vm.Run(m.prog, &st.env)
		if want, _ := out.(string); ok && (err != nil || got != want) {
			rep.Differ = append(rep.Differ, fmt.Sprintf("%s: compiled %.40q, VM %.40q (%v)", m.src, got, want, err))
		}
	}
	return rep
}
