// SAM2 Mask: the prompt frame of the connected clip in the node. Click = a point on the person,
// shift/ctrl/alt-click = a point that is not the person, drag = a box; click a point (or right-click
// the box) to remove it. The widgets keep the same text as typing would give ("x,y; x,y" and
// "x1,y1,x2,y2" in pixels of the frame), so saved and API workflows do not change. After a run the
// node's mask on that frame is drawn over it.
import { addCanvasWidget, canvasPoint, drawMessage, fetchFrame, loadView, redrawOnChange, registerNodeWidget, setWidget, sourceFile, sourceKey, widget } from "./common.js";
import { fit, formatPoints, parseBox, parsePoints } from "./geometry.js";

const NODE = "HarmoVidSAM2Mask";
const HIT_RADIUS = 9; // canvas pixels: a click this close to a point removes it
const DRAG_THRESHOLD = 5; // canvas pixels a press must move to draw a box instead of a point
const HINT = "click: person · shift-click: not person · drag: box · click a point / right-click the box: remove";

class PromptEditor {
  constructor(node) {
    this.node = node;
    this.frame = null; // {image, width, height, count} of the prompt frame
    this.key = "";
    this.message = "Connect frames from a Load Video node (or run once) to see the prompt frame.";
    this.run = null; // {frame, mask, index, size} pictures of the last run
    this.drag = null;
    this.view = addCanvasWidget(node, "prompt_canvas", { minHeight: 260, hint: HINT });
    this.view.draw = (ctx, width, height) => this.draw(ctx, width, height);
    this.view.onFrame = () => this.refresh();
    const canvas = this.view.canvas;
    canvas.addEventListener("pointerdown", (e) => this.press(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.release(e));
    canvas.addEventListener("contextmenu", (e) => this.removeBoxAt(e));
    redrawOnChange(node, ["points", "negative_points", "box", "prompt_frame"], this.view);
  }

  prompts() {
    try {
      return { positive: parsePoints(widget(this.node, "points")?.value), negative: parsePoints(widget(this.node, "negative_points")?.value),
               box: parseBox(widget(this.node, "box")?.value) };
    } catch (error) {
      return { positive: [], negative: [], box: null, error: error.message };
    }
  }

  // Fetch the prompt frame when the clip or the prompt frame changed (checked on every repaint of the graph).
  refresh() {
    const source = sourceFile(this.node, "frames");
    const index = Number(widget(this.node, "prompt_frame")?.value ?? 0);
    const key = sourceKey(source, index);
    if (key === this.key) return;
    this.key = key;
    if (!source) { this.frame = null; this.view.redraw(); return; }
    fetchFrame(source, index).then((frame) => {
      if (this.key !== key) return;
      this.frame = frame.error ? null : frame;
      this.message = frame.error ?? "";
      this.view.redraw();
    });
  }

  async showRun(output) {
    if (!output?.harmovid_prompt_frame?.length) return;
    const [frame, mask] = await Promise.all([loadView(output.harmovid_prompt_frame[0]), loadView(output.harmovid_prompt_mask[0])]);
    this.run = { frame, mask, index: output.harmovid_prompt_index[0], size: output.harmovid_prompt_size };
    this.view.redraw();
  }

  // The picture and the frame size its pixel coordinates refer to: the live frame, else the last run's.
  picture() {
    if (this.frame) return { image: this.frame.image, width: this.frame.width, height: this.frame.height };
    if (this.run) return { image: this.run.frame, width: this.run.size[0], height: this.run.size[1] };
    return null;
  }

  layout() {
    const picture = this.picture();
    return picture && { ...picture, ...fit(picture.width, picture.height, this.view.canvas.width, this.view.canvas.height) };
  }

  toFrame(event) {
    const at = this.layout(), [cx, cy] = canvasPoint(this.view.canvas, event);
    const x = (cx - at.left) / at.scale, y = (cy - at.top) / at.scale;
    return [Math.min(Math.max(x, 0), at.width - 1), Math.min(Math.max(y, 0), at.height - 1), cx, cy];
  }

  draw(ctx, width, height) {
    const at = this.layout();
    if (!at) return drawMessage(ctx, this.message, width);
    const w = at.width * at.scale, h = at.height * at.scale;
    ctx.drawImage(at.image, at.left, at.top, w, h);
    const index = Number(widget(this.node, "prompt_frame")?.value ?? 0);
    if (this.run && this.run.index === Math.min(index, (this.frame?.count ?? Infinity) - 1)) ctx.drawImage(this.run.mask, at.left, at.top, w, h);
    const prompts = this.prompts();
    const place = ([x, y]) => [at.left + x * at.scale, at.top + y * at.scale];
    const box = this.drag?.box ?? prompts.box;
    if (box) {
      const [x1, y1] = place(box.slice(0, 2)), [x2, y2] = place(box.slice(2));
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = "#ffd23f";
      ctx.lineWidth = 2;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.setLineDash([]);
    }
    for (const [points, colour, sign] of [[prompts.positive, "#2ecc71", "+"], [prompts.negative, "#e74c3c", "−"]]) {
      for (const point of points) {
        const [x, y] = place(point);
        ctx.beginPath();
        ctx.arc(x, y, 7, 0, 2 * Math.PI);
        ctx.fillStyle = colour;
        ctx.fill();
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5;
        ctx.stroke();
        ctx.fillStyle = "#fff";
        ctx.font = "bold 11px sans-serif";
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(sign, x, y + 0.5);
        ctx.textAlign = "start";
        ctx.textBaseline = "alphabetic";
      }
    }
    if (prompts.error) drawMessage(ctx, `cannot read the prompt text: ${prompts.error}`, width, "#e74c3c", 16);
    this.view.footer.textContent = `frame ${index}${this.frame ? ` of ${this.frame.count}` : ""} · ${at.width}x${at.height} · ${HINT}`;
  }

  press(event) {
    if (event.button !== 0 || !this.layout()) return;
    event.preventDefault();
    event.stopPropagation();
    this.view.canvas.setPointerCapture(event.pointerId);
    const [x, y, cx, cy] = this.toFrame(event);
    this.drag = { start: [x, y], screen: [cx, cy], negative: event.shiftKey || event.ctrlKey || event.altKey || event.metaKey, box: null };
  }

  move(event) {
    if (!this.drag) return;
    const [x, y, cx, cy] = this.toFrame(event);
    if (Math.hypot(cx - this.drag.screen[0], cy - this.drag.screen[1]) < DRAG_THRESHOLD && !this.drag.box) return;
    const [sx, sy] = this.drag.start;
    this.drag.box = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
    this.view.redraw();
  }

  release(event) {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    event.stopPropagation();
    if (drag.box) {
      const box = drag.box.map(Math.round);
      if (box[0] < box[2] && box[1] < box[3]) setWidget(this.node, "box", box.join(","));
    } else {
      this.click(drag.start, drag.screen, drag.negative);
    }
    this.view.redraw();
  }

  // A click on a point removes it; elsewhere it adds a point (negative with a modifier key).
  click(point, screen, negative) {
    const prompts = this.prompts();
    if (prompts.error) return;
    const at = this.layout();
    for (const name of ["points", "negative_points"]) {
      const points = name === "points" ? prompts.positive : prompts.negative;
      const hit = points.findIndex(([x, y]) => Math.hypot(at.left + x * at.scale - screen[0], at.top + y * at.scale - screen[1]) <= HIT_RADIUS);
      if (hit >= 0) {
        points.splice(hit, 1);
        setWidget(this.node, name, formatPoints(points));
        return;
      }
    }
    const name = negative ? "negative_points" : "points";
    setWidget(this.node, name, formatPoints([...(negative ? prompts.negative : prompts.positive), point]));
  }

  removeBoxAt(event) {
    event.preventDefault();
    event.stopPropagation();
    const box = this.prompts().box;
    if (!box || !this.layout()) return;
    const [x, y] = this.toFrame(event);
    if (x >= box[0] && x <= box[2] && y >= box[1] && y <= box[3]) {
      setWidget(this.node, "box", "");
      this.view.redraw();
    }
  }
}

registerNodeWidget("HarmoVid.SAM2Prompts", NODE, "harmovidPrompts", (node) => new PromptEditor(node), 360);
