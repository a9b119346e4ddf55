"""Talk to a running `tdro-suite serve` with the official OpenAI client and plain HTTP.

    python docker/examples/client.py [http://127.0.0.1:8000]   (TDRO_API_KEY if the server needs one)
"""

from __future__ import annotations

import os
import sys

import httpx
import openai

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
key = os.environ.get("TDRO_API_KEY") or "none"
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key)
model = client.models.list().data[0].id

passages = client.embeddings.create(model=model, input=["Paris is the capital of France."],
                                    extra_body={"input_type": "passage"})
query = client.embeddings.create(model=model, input="capital of France", extra_body={"input_type": "query"})
score = sum(a * b for a, b in zip(passages.data[0].embedding, query.data[0].embedding, strict=True))
print(f"{model}: dimension {len(query.data[0].embedding)}, cosine {score:.3f}")

headers = {"Authorization": f"Bearer {key}"}
with httpx.Client(base_url=base, headers=headers) as http:
    http.post("/v1/documents", json={"documents": [{"id": "paris", "title": "Paris",
                                                     "text": "Paris is the capital of France."}]}).raise_for_status()
    hits = http.post("/v1/search", json={"query": "capital of France", "top_k": 3}).json()["data"][0]["hits"]
    print(hits)
