// Previews after a run: the pack's image-producing nodes show their result in the node, with a frame
// slider for video (masks drawn over their frames). The pictures are the node's "ui" output
// (harmovid_preview: a few frames spread over the clip, harmovid_preview_index: their frame numbers).
import { app } from "../../scripts/app.js";
import { addCanvasWidget, loadView } from "./common.js";
import { fit } from "./geometry.js";

// Every node of the pack may send a preview; those that make pictures do.
const CATEGORY = "HarmoVid";

class FramePreview {
  constructor(node) {
    this.node = node;
    this.pictures = [];
    this.indices = [];
    this.current = 0;
    this.view = addCanvasWidget(node, "preview_canvas", { minHeight: 200 });
    this.view.canvas.style.cursor = "default";
    this.view.draw = (ctx, width, height) => this.draw(ctx, width, height);
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: 0, value: 0 });
    slider.style.cssText = "width:100%;margin:2px 0;";
    slider.dataset.harmovid = "preview_slider";
    slider.addEventListener("input", () => { this.current = Number(slider.value); this.view.redraw(); });
    for (const type of ["pointerdown", "pointermove", "wheel"]) slider.addEventListener(type, (e) => e.stopPropagation());
    this.view.canvas.parentElement.insertBefore(slider, this.view.footer);
    this.slider = slider;
  }

  async show(output) {
    const references = output?.harmovid_preview ?? [];
    this.pictures = await Promise.all(references.map(loadView));
    this.indices = output?.harmovid_preview_index ?? this.pictures.map((_, i) => i);
    this.current = Math.min(this.current, Math.max(0, this.pictures.length - 1));
    Object.assign(this.slider, { max: Math.max(0, this.pictures.length - 1), value: this.current });
    this.slider.style.display = this.pictures.length > 1 ? "" : "none";
    this.view.redraw();
  }

  draw(ctx, width, height) {
    const picture = this.pictures[this.current];
    if (!picture) return;
    const at = fit(picture.naturalWidth, picture.naturalHeight, width, height);
    ctx.drawImage(picture, at.left, at.top, picture.naturalWidth * at.scale, picture.naturalHeight * at.scale);
    this.view.footer.textContent = `result · frame ${this.indices[this.current]} (${this.current + 1} of ${this.pictures.length} shown)`;
  }
}

app.registerExtension({
  name: "HarmoVid.Previews",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.category !== CATEGORY) return;
    const executed = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      executed?.apply(this, arguments);
      if (!output?.harmovid_preview?.length) return;
      if (!this.harmovidPreview) {
        this.harmovidPreview = new FramePreview(this);
        this.setSize([this.size[0], Math.max(this.size[1], this.computeSize()[1])]);
      }
      this.harmovidPreview.show(output);
    };
  },
});
