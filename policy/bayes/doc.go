// Package bayes is moat's learning classifier: a Bayesian token classifier
// in the style of Gary Robinson's "A statistical approach to the spam
// problem" (2003), as used by SpamBayes, bogofilter and SpamAssassin.
//
// A message is turned into tokens (Tokenize): lower-cased words of the
// visible text and the Subject, header tokens prefixed by the field name
// (From and Reply-To domains, Received hints, X-Mailer, Content-Type, the
// set of header field names), URL host and registered-domain tokens, and
// MIME structure tokens. Tokens are deduplicated per message and bounded
// in number (Config.MaxTokens).
//
// Each token w gets Robinson's degree of belief f(w) = (s·x + n·p(w)) /
// (s + n), with s = 0.5, x = 0.5, p(w) the spam ratio normalised by the
// class totals and n the number of learned messages holding w, the
// counts of the larger class scaled down to the size of the smaller
// (Options.NoBalance). The most significant tokens (at most 30 with
// |f(w) − 0.5| > 0.1) are combined with Fisher's inverse chi-square method
// into one probability in 0..1 (Classifier.Classify). README.md has the
// measurements behind these choices.
//
// Counts live in a Store: BoltStore (go.etcd.io/bbolt, one file
// <data_dir>/bayes.db, opened once by one process) or RedisStore (token
// counts in Redis hashes, so a fleet learns together), or MemStore for
// tests. Stores remember each learned message by its Digest with its
// class, never its tokens: learning a message twice counts once, learning
// it as the other class moves its tokens, and forgetting it removes them;
// both re-tokenize the message, so a token whose count would go below
// zero (after a tokenizer change) stays at zero.
//
// This package imports only policy/content (for FromContent) and the
// store libraries; it produces facts (Facts) and never decides.
package bayes
