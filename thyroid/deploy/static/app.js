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
    // An unusual image keeps its answer; the warning says it lies far from the development images.
    var warning = document.getElementById("shift-warning");
    warning.textContent = data.shift_warning || "";
    warning.hidden = !data.shift_warning;
    var shiftNote = document.getElementById("shift-note");
    shiftNote.textContent = data.shift_note || "";
    shiftNote.dataset.shift = data.shift === null || data.shift === undefined ? "" : String(data.shift);
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
    showOutline(data);
    result.hidden = false;
    setStatus("Done.", false);
  }

  var SVG = "http://www.w3.org/2000/svg";
  var imageUrl = null;

  function sizeText(m) {
    if (!m) { return ""; }
    if (m.width_mm !== undefined) {
      return "about " + m.width_mm.toFixed(1) + " x " + m.height_mm.toFixed(1) + " mm";
    }
    return "about " + Math.round(m.width_px) + " x " + Math.round(m.height_px) + " px";
  }

  // Draws the predicted outline(s) over the uploaded image (its own pixels: the answer's
  // coordinates are in the input image's pixels, so the SVG uses them as its view box).
  function showOutline(data) {
    var figure = document.getElementById("outline-figure");
    var view = document.getElementById("outline-view");
    var note = document.getElementById("outline-note");
    while (view.firstChild) { view.removeChild(view.firstChild); }
    if (!data.outlines || !data.outlines.length || !imageUrl) {
      figure.hidden = true;
      note.textContent = data.outline_note || "";
      return;
    }
    view.setAttribute("viewBox", "0 0 " + data.width + " " + data.height);
    var picture = document.createElementNS(SVG, "image");
    picture.setAttribute("href", imageUrl);
    picture.setAttribute("width", data.width);
    picture.setAttribute("height", data.height);
    view.appendChild(picture);
    data.outlines.forEach(function (points, index) {
      var polygon = document.createElementNS(SVG, "polygon");
      polygon.setAttribute("points", points.map(function (p) { return p[0] + "," + p[1]; }).join(" "));
      if (index === 0) { polygon.setAttribute("class", "main"); }
      view.appendChild(polygon);
    });
    document.getElementById("outline-caption").textContent =
      "Predicted nodule outline, " + sizeText(data.measurements) + ".";
    note.textContent = data.outline_note || "";
    figure.hidden = false;
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
    if (imageUrl) { URL.revokeObjectURL(imageUrl); }
    imageUrl = URL.createObjectURL(file);
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
