"""Deployment: the exported TFLite model, Grad-CAM and the web app.

``thyroid.deploy.tflite_model.TFLiteModel`` (load + predict, with the heat map the exported
model draws itself: ``thyroid.deploy.head_cam``), ``thyroid.deploy.model_card`` (the card every
export carries) and ``thyroid.deploy.webapp.create_app``.
Entry points: ``python -m thyroid.export``, ``python -m thyroid.predict``,
``python -m thyroid.serve``.
"""

NOTICE = ("Research tool, not a diagnosis: this model has not been validated for clinical use. "
          "Do not make medical decisions with it.")
