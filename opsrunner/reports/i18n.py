"""The words of the human-readable reports in English and Chinese."""

# ruff: noqa: RUF001  (Chinese labels use full-width punctuation and the multiplication sign)

from __future__ import annotations

LANGS = ("en", "zh")

_LABELS: dict[str, tuple[str, str]] = {
    "title": ("Compliance report", "合规报告"),
    "grade": ("Grade", "等级"),
    "as_of": ("as of", "截至"),
    "run": ("Run", "运行"),
    "scores": ("Scores", "得分"),
    "raw": ("raw", "原始"),
    "effective": ("effective", "有效"),
    "automated": ("automated", "自动"),
    "manual": ("manual", "人工"),
    "all": ("all", "全部"),
    "trend": ("Trend over past runs", "历次运行趋势"),
    "top_risks": ("Top risks", "主要风险"),
    "worst_hosts": ("Worst hosts", "得分最低的主机"),
    "worst_controls": ("Worst controls", "失败最多的控制项"),
    "chapters": ("Score per chapter", "各章得分"),
    "owners": ("Score per owner role", "各责任角色得分"),
    "groups": ("Score per host group", "各主机组得分"),
    "changes": ("Since the last run", "与上次运行相比"),
    "newly_failing": ("newly failing", "新增失败"),
    "fixed": ("fixed", "已修复"),
    "regressed": ("regressed", "恶化"),
    "matrix": ("Host × control matrix", "主机 × 控制项矩阵"),
    "trail": (
        "Audit trail: clause → control → task → evidence",
        "审计线索：条款 → 控制项 → 任务 → 证据",
    ),
    "waivers": ("Waiver register", "豁免登记"),
    "attestations": ("Attestations", "人工证明"),
    "stale": ("Stale evidence", "过期证据"),
    "run_record": ("Run record", "运行记录"),
    "host": ("host", "主机"),
    "control": ("control", "控制项"),
    "severity": ("severity", "严重程度"),
    "status": ("status", "状态"),
    "chapter": ("chapter", "章"),
    "clause": ("clause", "条款"),
    "group": ("group", "组"),
    "owner": ("owner", "责任角色"),
    "reason": ("reason", "原因"),
    "evidence": ("evidence", "证据"),
    "failing": ("not passing", "未通过"),
    "hosts": ("hosts", "主机数"),
    "counted": ("counted", "计入"),
    "passed": ("passed", "通过"),
    "before": ("before", "之前"),
    "after": ("after", "之后"),
    "none": ("none", "无"),
    "filter": ("Filter", "筛选"),
    "any": ("any", "全部"),
    "approver": ("approver", "批准人"),
    "ticket": ("ticket", "工单"),
    "expires": ("expires", "到期"),
    "expiring_soon": ("expiring soon", "即将到期"),
    "scope": ("scope", "范围"),
    "attested_by": ("attested by", "证明人"),
    "valid_until": ("valid until", "有效期至"),
    "formulas": ("How each score is computed", "得分计算方法"),
    "showing_hosts": (
        "Showing the {shown} worst of {total} hosts;"
        " the full matrix is in the JSON and CSV exports.",
        "仅显示 {total} 台主机中得分最低的 {shown} 台；完整矩阵见 JSON 和 CSV 导出。",
    ),
    "showing_rows": ("Showing {shown} of {total}.", "显示 {total} 条中的 {shown} 条。"),
    "policy": ("policy", "策略"),
    "commit": ("commit", "提交"),
    "digest": ("digest", "摘要"),
    "mode": ("mode", "模式"),
    "user": ("user", "用户"),
    "controller": ("controller", "控制节点"),
    "inventory": ("inventory", "清单"),
    "limit": ("limit", "限定"),
    "disruptive": ("disruptive steps allowed", "允许破坏性操作"),
    "started": ("started", "开始"),
    "ended": ("ended", "结束"),
    "model": ("scoring model", "评分模型"),
    "task": ("task", "任务"),
    "level": ("level", "级别"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
    "unreachable": ("unreachable", "不可达"),
    "no_previous": ("No earlier run to compare with.", "没有可比较的先前运行。"),
    "no_change": ("No control changed status.", "没有控制项状态变化。"),
    "results": ("results", "结果"),
    "controls": ("controls", "控制项数"),
    "title_col": ("title", "标题"),
    "legend": ("Legend", "图例"),
}


def labels(lang: str) -> dict[str, str]:
    """Every label in one language."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (choose {', '.join(LANGS)})")
    index = LANGS.index(lang)
    return {key: pair[index] for key, pair in _LABELS.items()}
