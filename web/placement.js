// Composite: one background frame with the person (the first foreground frame cut out) where the scale,
// x, y and anchor widgets put them, redrawn as those change. Drag the person to move them, drag the
// corner handle or turn the mouse wheel over them to scale them; the widgets follow. Before a run the
// cut-out is the built-in segmenter's; after a run, the node's own alpha.
import { addCanvasWidget, canvasPoint, drawMessage, fetchFrame, loadView, redrawOnChange, registerNodeWidget, setWidget, sourceFile, sourceKey, widget } from "./common.js";
import { fit, placement } from "./geometry.js";

const NODE = "HarmoVidComposite";
const HANDLE = 7; // half the corner handle's size, canvas pixels
const HINT = "drag the person: move · drag the corner or wheel: scale";

const clamp = (value, low, high) => Math.min(Math.max(value, low), high);
const round3 = (value) => Math.round(value * 1000) / 1000;

class PlacementPreview {
  constructor(node) {
    this.node = node;
    this.layers = { foreground: null, background: null }; // images
    this.keys = { foreground: "", background: "" };
    this.fromRun = false;
    this.drag = null;
    this.view = addCanvasWidget(node, "placement_canvas", { minHeight: 220, hint: HINT });
    this.view.draw = (ctx, width, height) => this.draw(ctx, width, height);
    this.view.onFrame = () => this.refresh();
    const canvas = this.view.canvas;
    canvas.style.cursor = "move";
    canvas.addEventListener("pointerdown", (e) => this.press(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", () => { this.drag = null; });
    canvas.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    redrawOnChange(node, ["scale", "x", "y", "anchor"], this.view);
  }

  settings() {
    const value = (name, fallback) => widget(this.node, name)?.value ?? fallback;
    return { scale: Number(value("scale", 1)), x: Number(value("x", 0)), y: Number(value("y", 0)), anchor: value("anchor", "bottom-center") };
  }

  // The SAM2 Mask (built-in model) that the alpha comes from, through nodes such as Pseudo-Alpha: its
  // prompts pick the people in the cut-out as they will in the run.
  prompts() {
    let node = this.node, slot = node.findInputSlot?.("alpha") ?? -1;
    for (let hop = 0; hop < 8 && slot >= 0 && node; hop++) {
      node = node.getInputNode?.(slot);
      if (node?.type === "HarmoVidSAM2Mask") {
        if (!String(widget(node, "model")?.value ?? "").startsWith("built-in")) return null;
        return Object.fromEntries(["points", "negative_points", "box", "prompt_frame"].map((name) => [name, String(widget(node, name)?.value ?? "")]));
      }
      slot = node?.findInputSlot?.("mask") ?? -1;
    }
    return null;
  }

  // Fetch frame 0 of each uploaded clip when the connections or prompts change; a run's own layers win until then.
  refresh() {
    for (const [layer, cutout] of [["foreground", true], ["background", false]]) {
      const source = sourceFile(this.node, layer);
      const prompts = cutout ? this.prompts() : null;
      const key = sourceKey(source, 0, cutout) + JSON.stringify(prompts);
      if (key === this.keys[layer]) continue;
      this.keys[layer] = key;
      this.fromRun = false;
      if (!source) continue;
      // Prompts that pick nobody on this clip (yet) leave the plain cut-out.
      fetchFrame(source, 0, cutout, prompts).then((frame) => (frame.error && prompts ? fetchFrame(source, 0, cutout) : frame)).then((frame) => {
        if (this.keys[layer] !== key || this.fromRun || frame.error) return;
        this.layers[layer] = frame.image;
        this.view.redraw();
      });
    }
  }

  async showRun(output) {
    if (!output?.harmovid_foreground?.length || !output?.harmovid_background?.length) return;
    const [foreground, background] = await Promise.all([loadView(output.harmovid_foreground[0]), loadView(output.harmovid_background[0])]);
    Object.assign(this.layers, { foreground, background });
    this.fromRun = true;
    this.view.redraw();
  }

  // Background fitted into the canvas, and the person's rectangle on the canvas.
  layout() {
    const { foreground, background } = this.layers;
    if (!foreground || !background) return null;
    const bg = { width: background.naturalWidth, height: background.naturalHeight };
    const at = fit(bg.width, bg.height, this.view.canvas.width, this.view.canvas.height);
    const placed = placement({ width: foreground.naturalWidth, height: foreground.naturalHeight }, bg, this.settings());
    const person = { left: at.left + placed.left * at.scale, top: at.top + placed.top * at.scale,
                     width: placed.width * at.scale, height: placed.height * at.scale };
    return { bg, at, person };
  }

  draw(ctx, width, height) {
    const layout = this.layout();
    if (!layout) return drawMessage(ctx, "Connect clips from Load Video nodes (or run once) to place the person.", width);
    const { bg, at, person } = layout;
    ctx.save();
    ctx.beginPath();
    ctx.rect(at.left, at.top, bg.width * at.scale, bg.height * at.scale);
    ctx.clip();
    ctx.drawImage(this.layers.background, at.left, at.top, bg.width * at.scale, bg.height * at.scale);
    ctx.drawImage(this.layers.foreground, person.left, person.top, person.width, person.height);
    ctx.restore();
    ctx.setLineDash([5, 4]);
    ctx.strokeStyle = "#ffd23f";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(person.left, person.top, person.width, person.height);
    ctx.setLineDash([]);
    ctx.fillStyle = "#ffd23f";
    const [hx, hy] = this.handle(person);
    ctx.fillRect(hx - HANDLE, hy - HANDLE, 2 * HANDLE, 2 * HANDLE);
    const s = this.settings();
    this.view.footer.textContent = `scale ${s.scale.toFixed(2)} · x ${s.x.toFixed(3)} · y ${s.y.toFixed(3)} · ${s.anchor} · ${HINT}`;
  }

  handle(person) {
    return [person.left + person.width, person.top];
  }

  press(event) {
    const layout = this.layout();
    if (event.button !== 0 || !layout) return;
    event.preventDefault();
    event.stopPropagation();
    const [cx, cy] = canvasPoint(this.view.canvas, event);
    const { person, at, bg } = layout;
    const [hx, hy] = this.handle(person);
    const start = { point: [cx, cy], settings: this.settings(), person, at, bg };
    if (Math.abs(cx - hx) <= HANDLE * 1.5 && Math.abs(cy - hy) <= HANDLE * 1.5) this.drag = { mode: "scale", ...start };
    else if (cx >= person.left && cx <= person.left + person.width && cy >= person.top && cy <= person.top + person.height) this.drag = { mode: "move", ...start };
    else return;
    this.view.canvas.setPointerCapture(event.pointerId);
  }

  move(event) {
    const drag = this.drag;
    if (!drag) return;
    event.stopPropagation();
    const [cx, cy] = canvasPoint(this.view.canvas, event);
    const dx = cx - drag.point[0], dy = cy - drag.point[1];
    if (drag.mode === "move") {
      // A move of the person by (dx, dy) canvas pixels is dx / (canvas pixels per background width).
      setWidget(this.node, "x", round3(clamp(drag.settings.x + dx / (drag.bg.width * drag.at.scale), -2, 2)));
      setWidget(this.node, "y", round3(clamp(drag.settings.y + dy / (drag.bg.height * drag.at.scale), -2, 2)));
    } else {
      // The corner handle follows the pointer: the person's diagonal grows with its distance from the far corner.
      const far = [drag.person.left, drag.person.top + drag.person.height];
      const before = Math.hypot(drag.point[0] - far[0], drag.point[1] - far[1]);
      const after = Math.hypot(cx - far[0], cy - far[1]);
      setWidget(this.node, "scale", round3(clamp(drag.settings.scale * after / Math.max(before, 1), 0.05, 8)));
    }
    this.view.redraw();
  }

  wheel(event) {
    if (!this.layout()) return;
    event.preventDefault();
    event.stopPropagation();
    setWidget(this.node, "scale", round3(clamp(this.settings().scale * Math.exp(-event.deltaY * 0.001), 0.05, 8)));
    this.view.redraw();
  }
}

registerNodeWidget("HarmoVid.Placement", NODE, "harmovidPlacement", (node) => new PlacementPreview(node), 360);
