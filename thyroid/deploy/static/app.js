// Sends the chosen image to POST /api/predict and shows the answer. Nothing is stored.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var input = document.getElementById("image-input");
  var button = document.getElementById("submit");
  var statusLine = document.getElementById("status");
  var result = document.getElementById("result");
  var maxBytes = parseInt(form.dataset.maxBytes, 10);
  var field = form.dataset.field || "image";

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }

  function show(data) {
    var probability = document.getElementById("probability");
    probability.textContent = data.probability.toFixed(4);
    probability.dataset.probability = String(data.probability);
    var risk = document.getElementById("risk");
    risk.textContent = data.risk.toFixed(4);
    risk.dataset.risk = String(data.risk);
    document.getElementById("spread").textContent = data.spread === null ||
      data.spread === undefined ? "" : "\u00b1 " + data.spread.toFixed(3) + " across fold models";
    var label = document.getElementById("label");
    label.textContent = data.label_name;
    label.className = data.label_name;
    document.getElementById("threshold").textContent = String(data.threshold);
    var figure = document.getElementById("gradcam-figure");
    var note = document.getElementById("gradcam-note");
    if (data.gradcam) {
      document.getElementById("gradcam").src = data.gradcam;
      figure.hidden = false;
      note.textContent = "";
    } else {
      figure.hidden = true;
      note.textContent = data.gradcam_note || "";
    }
    result.hidden = false;
    setStatus("Done.", false);
  }

  input.addEventListener("change", function () {
    result.hidden = true;
    var file = input.files[0];
    if (!file) { button.disabled = true; setStatus("", false); return; }
    if (file.size > maxBytes) {
      button.disabled = true;
      setStatus("The file is too large: the limit is " + (maxBytes / 1048576) + " MB.", true);
      return;
    }
    button.disabled = false;
    setStatus("Ready: " + file.name, false);
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = input.files[0];
    if (!file) { setStatus("Choose an image first.", true); return; }
    var body = new FormData();
    body.append(field, file, file.name);
    button.disabled = true;
    result.hidden = true;
    setStatus("Analysing...", false);
    fetch("api/predict", { method: "POST", body: body })
      .then(function (response) {
        return response.json().catch(function () {
          return { error: "The server answered " + response.status + "." };
        }).then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        if (!answer.ok || answer.data.error) {
          setStatus(answer.data.error || "The request failed.", true);
        } else {
          show(answer.data);
        }
      })
      .catch(function (error) { setStatus("Could not reach the server: " + error, true); })
      .finally(function () { button.disabled = !input.files[0]; });
  });
})();
