"""Evaluation: pure measures on maps (``similarity``, ``localisation``, ``faithfulness``) and the
runs that use them (``validate``, ``stability``, ``sanity``, ``compare``), annotations and the
bundled data sets (``data``). Import the module you need:

    >>> from saliency_core.evaluation.stability import stability_check
    >>> stability_check(model, "coffee.png", ["gradcam"]).summary["gradcam"].verdict
    'stable'
    >>> from saliency_core.evaluation.sanity import sanity_check
    >>> sanity_check(model, "chelsea.png", ["gradient"]).verdicts()["gradient"].passed
    True
"""
