"""The TUI's look in one place: Textual's dark theme plus queuectl's own colours.

Each name here is a variable: ``$dead`` in ``app.tcss``, ``app.theme_variables["dead"]`` for the
Rich styles built in Python (the state cells, the stats bar, the details). One colour per state,
the same in borders, counts and cells. The app also gives them as defaults to any other theme
(one picked from the command palette), so that every theme has them.
"""

from __future__ import annotations

from dataclasses import replace

from textual.theme import BUILTIN_THEMES

from queuectl.models import State

STATE_COLORS = {
    State.PENDING: "#61afef",
    State.FAILED: "#d19a66",  # retrying
    State.PROCESSING: "#e5c07b",
    State.COMPLETED: "#98c379",
    State.DEAD: "#e06c75",
    State.CANCELLED: "#c678dd",  # listed with the dead, told apart by this
}
SHADES = {
    "muted": "#7f848e",  # labels, hints, zeros
    "canvas": "#1b1e23",  # the screen and the panes
    "surface-dim": "#21252b",  # the stats bar, dialogs
    "hover": "#262a31",  # a row under the mouse
    "raised": "#2c313a",  # the brand, inputs, an unfocused cursor
    "raised-focus": "#353b45",  # the focused input
    "rule": "#3e4451",  # borders, the focused cursor, the chart's low bars
    "error-bar": "#5c2b2f",  # the stats bar when the queue cannot be read
}

VARIABLES = {**{state.value: color for state, color in STATE_COLORS.items()}, **SHADES}
THEME = replace(BUILTIN_THEMES["textual-dark"], name="queuectl", variables=VARIABLES)
