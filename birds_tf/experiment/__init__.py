"""The experiment layer: everything gin and workdir, above the Keras engine of ``training``.

``train_eval`` (the one ``Config`` and the run), the method plug-ins and their registry
(``method``), multi-stage helpers (``stages``), the KD/SWA add-ons (``smoothing``). Gin
registrations live here and only here; ``configurables`` imports them all.
"""
