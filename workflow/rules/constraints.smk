# What each wildcard may match: exactly the names of the plan, so no rule can claim another rule's file.
wildcard_constraints:
    dataset=_alternatives(PLAN.datasets),
    model=_alternatives(PLAN.models),
    attack=_alternatives(PLAN.attacks),
    table=_alternatives(PLAN.tables),
    denoiser=_alternatives(PLAN.denoisers),
    ctable=_alternatives(PLAN.combined),
    part="|".join(AUDIT_PARTS),
    audit_attack=_alternatives(PLAN.audit_transfer),
