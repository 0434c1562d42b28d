"""The lean serving app's JSON (services/http_api.py), without starting a server."""

from __future__ import annotations

import json

from pydantic import BaseModel

from services.http_api import json_response


class Item(BaseModel):
    """A model nested in a graph output."""

    item_id: str
    score: float


def test_a_graph_output_is_sent_as_json_with_models_dumped_and_tuples_as_lists() -> None:
    out = {
        "ranking": [Item(item_id="50", score=0.25), Item(item_id="Amélie", score=1e-7)],
        "pair": ("a", 2),
        "by_code": {7: "seven"},  # json.dumps turned int keys into strings: so do we
        "none": None,
    }
    reply = json_response(out, 201)
    assert reply.status_code == 201
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(bytes(reply.body)) == {
        "ranking": [{"item_id": "50", "score": 0.25}, {"item_id": "Amélie", "score": 1e-7}],
        "pair": ["a", 2],
        "by_code": {"7": "seven"},
        "none": None,
    }
