"""The text-only chat spec the served text and debug-capture tests share."""

from rspp.testing import with_patient_budgets

TEXT_CHAT = with_patient_budgets("""name: text-chat
version: 1.0.0
profile: simple/v1
providers:
  llm: {primary: local}
nodes:
  - {id: llm, type: llm}
edges:
  - {from: input.text, to: llm.text}
  - {from: llm.text, to: output.text}
""")
