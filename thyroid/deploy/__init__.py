"""Deployment: the exported TFLite model, Grad-CAM and the web app.

``thyroid.deploy.tflite_model.TFLiteModel`` (load + predict), ``thyroid.deploy.gradcam.GradCam``
(heat maps from the TF model behind an export) and ``thyroid.deploy.webapp.create_app``.
Entry points: ``python -m thyroid.export``, ``python -m thyroid.predict``,
``python -m thyroid.serve``.
"""

NOTICE = ("Research tool, not a diagnosis: this model has not been validated for clinical use. "
          "Do not make medical decisions with it.")
