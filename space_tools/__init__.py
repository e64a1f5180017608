"""Tools that build and deploy the ComP Space (``spaces/comp-demo``); never deployed themselves.

* ``python -m space_tools build_assets`` trains the bundled checkpoint on a generated corpus (text features from
  the packaged all-MiniLM-L6-v2 sentence encoder on generated emotional sentences; audio and video synthetic)
  and writes the held-out examples (:mod:`space_tools.build_assets`);
* ``python -m space_tools deploy --repo <org>/<space>`` stages what a Space repository needs (the comp-emotion
  wheel inside it, pinned requirements, app, assets, checkpoint) and uploads it (:mod:`space_tools.deploy`).
"""
