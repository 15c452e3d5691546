package gateway

import (
	"context"

	"moat/policy"
	"moat/policy/arc"
	"moat/rules"
)

// GroupARC is the fact group of the ARC check (arc.result, arc.cv,
// arc.instances, arc.oldest_pass, arc.aar, arc.domain, arc.reason).
const GroupARC = "arc"

// ARCFactGroup is the rules' view of the ARC validation (policy.ARC). A
// message that was not checked (our own users' mail, or no resolver)
// reads arc.result == "none".
func ARCFactGroup() rules.FactGroup {
	return rules.FactGroup{Name: GroupARC, Stage: rules.StageData, Zero: &policy.ARC{Result: string(policy.ResultNone)}}
}

// arcCheck validates the ARC chain of inbound mail (RFC 8617 §5.2).
type arcCheck struct{ p *Pipeline }

func (arcCheck) Name() string { return "arc" }

func (c arcCheck) CheckData(ctx context.Context, t *Txn) error {
	if !c.p.inbound(t) {
		return nil
	}
	res := arc.Verify(ctx, c.p.checks.Resolver, t.Raw, arc.Options{})
	t.arc = &res
	if c.p.checks.ARCResult != nil {
		c.p.checks.ARCResult(res.Result)
	}
	t.Facts.SetGroup(GroupARC, t.arc)
	return nil
}

var _ Sealer = (*arc.Sealer)(nil)
