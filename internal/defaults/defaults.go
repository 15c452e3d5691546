// Package defaults fills the unset bounds of an options struct with their
// documented defaults, the step every Options.withDefaults of the policy
// packages starts with.
package defaults

// Number is what a bound is: a count, a size or a duration (an int64).
type Number interface {
	~int | ~int64
}

// Positive sets *v to def unless it is positive: zero and negative
// bounds take the default.
func Positive[T Number](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
