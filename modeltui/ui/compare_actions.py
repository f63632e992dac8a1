"""Comparing the open model with another target (c) and the changed-only filter (C).

A mixin of :class:`modeltui.ui.app.ModelTuiApp`: the dialog opens the other
target and compares every tensor in a worker; the app keeps the result
(:class:`~modeltui.core.compare_tree.Comparison`), the tree shows its marks
and the compare panel the selected tensor against the other side. A change
to the model (an edit, undo, redo, a device move) makes the comparison
stale: it is dropped and the app says so.
"""

from __future__ import annotations


class CompareActions:
    """The compare actions (mixed into the app)."""

    comparison = None  # core.compare_tree.Comparison | None

    def _log_length(self) -> int:
        return len(self.session.log) if self.session is not None else 0

    def action_compare(self) -> None:
        if self.opened is None:
            self.say("the target is not open yet", severity="warning")
            return
        from modeltui.ui.dialogs.compare import CompareDialog, source_of

        source = source_of(self.opened, self.target, self.weights)
        self.push_screen(CompareDialog(self.opened, source, self.trust, self._log_length()), self._compared)

    def _compared(self, comparison) -> None:
        if comparison is None:
            return
        self._drop_comparison()
        self.comparison = comparison
        self.main.show_comparison(comparison, changed_only=False)
        report = comparison.report
        lines = [f"{comparison.summary()} (vs {comparison.label})"]
        if report.mapping is not None:
            lines.append(f"key mapping: {report.mapping.describe()}")
        if report.identical:
            aliases = sum(1 for t in report.only_a + report.only_b if t.tied_to)
            lines.append("identical: every tensor matches bit for bit"
                         + (f" (the {aliases:,} name(s) one side lacks are tied aliases)" if aliases else ""))
        lines.append("C shows only what changed")
        self.say(lines, title="Compared", timeout=10,
                 severity="information" if report.identical else "warning")

    def action_changed_only(self) -> None:
        if self.comparison is None:
            self.say("nothing compared yet: press c to compare with another checkpoint first", severity="warning")
            return
        on = not self.main.tree.changed_only
        self.main.show_comparison(self.comparison, changed_only=on)
        self.say("showing only what changed" if on else "showing everything", timeout=3)

    def _drop_comparison(self) -> None:
        old, self.comparison = self.comparison, None
        if old is not None and old.other is not None:
            old.other = None  # its files close when nothing reads them any more

    def refresh_views(self) -> None:
        """Refresh every view; a comparison made before the model changed is dropped (it would lie)."""
        c = self.comparison
        if c is not None and self._log_length() != c.log_length:
            self._drop_comparison()
            self.main.show_comparison(None)
            self.say("the model changed since the comparison: its marks are cleared (press c to compare again)",
                     severity="warning", timeout=6)
        super().refresh_views()
