#include "moelab/views/heatmap_window.h"

#include <backends/imgui_impl_vulkan.h>
#include <imgui.h>

#include <QElapsedTimer>
#include <QFile>
#include <QMouseEvent>
#include <QVulkanFunctions>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "moelab/core/log.h"
#include "moelab/views/vulkan_heatmap.h"

namespace moelab::views {
namespace {

// Margins of the plot area (pixels): room for title, ticks, axis labels and the legend. The top
// margin has two bands that never overlap: title and subtitle (y 4..38, across the whole
// width), then the y-axis label and the legend's header (y 42..70).
constexpr int kLeft = 70, kTop = 76, kRight = 190, kBottom = 46;
// Pixels per column needed before tick labels show token text instead of indices.
constexpr float kTokenTextZoom = 36.0f;

ImU32 to_imgui(Rgba8 c) {
  return IM_COL32(c.r, c.g, c.b, c.a);
}

// Overlay font: a TrueType font with the glyphs token labels use (display_piece marks spaces
// with U+2423, newlines with U+21B5, tabs with U+21E5; Latin-1; dashes and arrows), so labels
// read "␣capital" and not "?capital". MOELAB_VIEWS_FONT names a .ttf; otherwise DejaVu Sans
// where the system has it; else ImGui's built-in ASCII font.
void load_overlay_font() {
  static const ImWchar kRanges[] = {0x0020, 0x00FF, 0x2010, 0x206F, 0x2190, 0x21FF,
                                    0x2212, 0x2212, 0x2400, 0x243F, 0};
  const char* env = std::getenv("MOELAB_VIEWS_FONT");
  for (const char* path :
       {env, "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"}) {
    if (!path || !QFile::exists(QString::fromLocal8Bit(path))) continue;
    if (ImGui::GetIO().Fonts->AddFontFromFileTTF(path, 14.0f, nullptr, kRanges)) return;
  }
}

}  // namespace

// Draws one frame: heatmap in the plot rectangle, then the ImGui overlay on top.
class HeatmapWindowRenderer : public QVulkanWindowRenderer {
 public:
  explicit HeatmapWindowRenderer(HeatmapWindow* w) : w_(w) {}

  void initResources() override {
    QVulkanInstance* inst = w_->vulkanInstance();
    ExternalDevice ext{inst->vkInstance(), w_->physicalDevice(), w_->device(),
                       w_->graphicsQueueFamilyIndex(), w_->graphicsQueue()};
    std::string why;
    heatmap_ = VulkanHeatmapRenderer::create_on_device(ext, {}, &why);
    if (!heatmap_) log_warning("views: heatmap renderer failed on the window device: " + why);
    w_->data_dirty_ = true;

    ctx_ = ImGui::CreateContext();
    ImGui::SetCurrentContext(ctx_);
    ImGui::GetIO().IniFilename = nullptr;  // no imgui.ini next to the researcher's files
    ImGui::StyleColorsDark();
    load_overlay_font();
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 16};
    VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    pi.flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT;
    pi.maxSets = 16;
    pi.poolSizeCount = 1;
    pi.pPoolSizes = &size;
    vkCreateDescriptorPool(w_->device(), &pi, nullptr, &imgui_pool_);
    ImGui_ImplVulkan_InitInfo info{};
    info.Instance = inst->vkInstance();
    info.PhysicalDevice = w_->physicalDevice();
    info.Device = w_->device();
    info.QueueFamily = w_->graphicsQueueFamilyIndex();
    info.Queue = w_->graphicsQueue();
    info.DescriptorPool = imgui_pool_;
    info.MinImageCount = 2;
    info.ImageCount = static_cast<uint32_t>(std::max(2, w_->concurrentFrameCount()));
    info.MSAASamples = VK_SAMPLE_COUNT_1_BIT;
    ImGui_ImplVulkan_Init(&info, w_->defaultRenderPass());
    upload_fonts();
    timer_.start();
  }

  void initSwapChainResources() override {
    if (heatmap_) heatmap_->attach_render_pass(w_->defaultRenderPass());
  }
  void releaseSwapChainResources() override {}

  void releaseResources() override {
    vkDeviceWaitIdle(w_->device());
    ImGui::SetCurrentContext(ctx_);
    ImGui_ImplVulkan_Shutdown();
    ImGui::DestroyContext(ctx_);
    ctx_ = nullptr;
    vkDestroyDescriptorPool(w_->device(), imgui_pool_, nullptr);
    imgui_pool_ = VK_NULL_HANDLE;
    heatmap_.reset();
  }

  void startNextFrame() override {
    ImGui::SetCurrentContext(ctx_);
    const QSize sz = w_->swapChainImageSize();
    const QRect plot = w_->plot_rect();
    HeatmapView& v = w_->view_;
    if (heatmap_ && w_->data_dirty_) {
      heatmap_->set_data(v.map);
      w_->data_dirty_ = false;
    } else if (heatmap_ && w_->rows_dirty_lo_ >= 0) {
      heatmap_->update_rows(v.map, w_->rows_dirty_lo_, w_->rows_dirty_hi_ - w_->rows_dirty_lo_);
    }
    w_->rows_dirty_lo_ = w_->rows_dirty_hi_ = -1;
    if (w_->fit_pending_ && plot.width() > 0 && plot.height() > 0) {
      w_->transform_ = ViewTransform::fit(v.map.rows, v.map.cols, plot.width(), plot.height());
      w_->fit_pending_ = false;
      w_->user_moved_ = false;
    }

    // Qt input -> ImGui (1.86 IO fields).
    ImGuiIO& io = ImGui::GetIO();
    io.DisplaySize = ImVec2(static_cast<float>(sz.width()), static_cast<float>(sz.height()));
    io.DeltaTime = std::max(1e-4f, static_cast<float>(timer_.restart()) / 1000.0f);
    const qreal dpr = w_->devicePixelRatio();
    io.MousePos = w_->mouse_.x() < 0 ? ImVec2(-FLT_MAX, -FLT_MAX)
                                     : ImVec2(static_cast<float>(w_->mouse_.x() * dpr),
                                              static_cast<float>(w_->mouse_.y() * dpr));
    for (int i = 0; i < 3; ++i) io.MouseDown[i] = w_->mouse_down_[i];
    io.MouseWheel = w_->wheel_;
    w_->wheel_ = 0.0f;

    ImGui_ImplVulkan_NewFrame();
    ImGui::NewFrame();
    draw_overlay(plot);
    ImGui::Render();

    VkCommandBuffer cb = w_->currentCommandBuffer();
    ColorScale scale = v.scale;
    scale.coarse_pool = w_->moving_;  // exact pooling once the view settles
    if (heatmap_ && plot.width() > 0 && plot.height() > 0)
      heatmap_->prepare(cb, w_->currentFrame(), plot.width(), plot.height(), scale, w_->transform_);
    if (heatmap_) w_->band_redraws_ = heatmap_->band_redraws();
    VkClearValue clear[2]{};
    clear[0].color = {{0.11f, 0.11f, 0.12f, 1.0f}};
    clear[1].depthStencil = {1.0f, 0};
    VkRenderPassBeginInfo rb{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
    rb.renderPass = w_->defaultRenderPass();
    rb.framebuffer = w_->currentFramebuffer();
    rb.renderArea.extent = {static_cast<uint32_t>(sz.width()), static_cast<uint32_t>(sz.height())};
    rb.clearValueCount = w_->sampleCountFlagBits() > VK_SAMPLE_COUNT_1_BIT ? 3 : 2;
    rb.pClearValues = clear;
    vkCmdBeginRenderPass(cb, &rb, VK_SUBPASS_CONTENTS_INLINE);
    if (heatmap_ && plot.width() > 0 && plot.height() > 0) {
      heatmap_->record(cb, w_->currentFrame(), plot.x(), plot.y(), plot.width(), plot.height(),
                       scale, w_->transform_);
    }
    ImGui_ImplVulkan_RenderDrawData(ImGui::GetDrawData(), cb);
    vkCmdEndRenderPass(cb);
    w_->frameReady();
    ++w_->frames_;
    emit w_->frameDrawn();
    if (w_->frames_ < 4) w_->requestUpdate();  // ImGui settles its layout over a few frames
  }

 private:
  void upload_fonts() {
    VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pi.queueFamilyIndex = w_->graphicsQueueFamilyIndex();
    VkCommandPool pool;
    vkCreateCommandPool(w_->device(), &pi, nullptr, &pool);
    VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = pool;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    VkCommandBuffer cb;
    vkAllocateCommandBuffers(w_->device(), &ai, &cb);
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    vkBeginCommandBuffer(cb, &bi);
    ImGui_ImplVulkan_CreateFontsTexture(cb);
    vkEndCommandBuffer(cb);
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cb;
    vkQueueSubmit(w_->graphicsQueue(), 1, &si, VK_NULL_HANDLE);
    vkQueueWaitIdle(w_->graphicsQueue());
    ImGui_ImplVulkan_DestroyFontUploadObjects();
    vkDestroyCommandPool(w_->device(), pool, nullptr);
  }

  // Title, axes with ticks, legend with units and the hover tooltip.
  void draw_overlay(const QRect& plot) {
    const HeatmapView& v = w_->view_;
    const ViewTransform& t = w_->transform_;
    ImDrawList* dl = ImGui::GetForegroundDrawList();
    const ImU32 text = IM_COL32(230, 230, 230, 255), dim = IM_COL32(170, 170, 170, 255);
    const float px0 = static_cast<float>(plot.x()), py0 = static_cast<float>(plot.y());
    const float px1 = px0 + static_cast<float>(plot.width());
    const float py1 = py0 + static_cast<float>(plot.height());
    // Title and subtitle: centred on the whole width, left-aligned when wider than it.
    const float width = static_cast<float>(w_->swapChainImageSize().width());
    auto centred = [&](const std::string& s, float y, ImU32 colour) {
      const ImVec2 sz = ImGui::CalcTextSize(s.c_str());
      dl->AddText(ImVec2(std::max(4.0f, (width - sz.x) / 2), y), colour, s.c_str());
    };
    centred(v.title, v.subtitle.empty() ? 10.0f : 4.0f, text);
    if (!v.subtitle.empty()) centred(v.subtitle, 22.0f, dim);
    // Selections: a dark halo under a white line, readable over any cell colour. Selected row
    // (attention query) across the plot, selected column (token) down it, marked cells.
    auto outline = [&](float x0, float y0, float x1, float y1) {
      x0 = std::max(px0, x0);
      y0 = std::max(py0, y0);
      x1 = std::min(px1, x1);
      y1 = std::min(py1, y1);
      if (x1 < x0 || y1 < y0) return;
      dl->AddRect(ImVec2(x0, y0), ImVec2(x1, y1), IM_COL32(0, 0, 0, 255), 0.0f, 0, 4.0f);
      dl->AddRect(ImVec2(x0, y0), ImVec2(x1, y1), IM_COL32(255, 255, 255, 255), 0.0f, 0, 2.0f);
    };
    if (w_->selected_row_ >= 0 && w_->selected_row_ < v.map.rows) {
      const float y = py0 + (static_cast<float>(w_->selected_row_) - t.origin.y) * t.zoom.y;
      outline(px0, y - 1, px1, y + std::max(t.zoom.y, 2.0f) + 1);
    }
    if (w_->selected_col_ >= 0 && w_->selected_col_ < v.map.cols) {
      const float x = px0 + (static_cast<float>(w_->selected_col_) - t.origin.x) * t.zoom.x;
      outline(x - 1, py0, x + std::max(t.zoom.x, 2.0f) + 1, py1);
    }
    for (const auto& [r, c] : w_->marked_cells_) {
      if (r < 0 || r >= v.map.rows || c < 0 || c >= v.map.cols) continue;
      const float x = px0 + (static_cast<float>(c) - t.origin.x) * t.zoom.x;
      const float y = py0 + (static_cast<float>(r) - t.origin.y) * t.zoom.y;
      outline(x - 1, y - 1, x + std::max(t.zoom.x, 2.0f) + 1, y + std::max(t.zoom.y, 2.0f) + 1);
    }
    dl->AddRect(ImVec2(px0 - 1, py0 - 1), ImVec2(px1 + 1, py1 + 1), dim);

    // X ticks: token text when a column is wide enough, else indices every ~80 px.
    w_->token_labels_ = 0;
    const bool token_text = !v.x_ticks.empty() && t.zoom.x >= kTokenTextZoom;
    const int first_col = std::max(0, static_cast<int>(std::floor(t.origin.x)));
    const int last_col = std::min(
        v.map.cols - 1, static_cast<int>(std::floor(t.origin.x + plot.width() / t.zoom.x)));
    const int step_x = token_text ? 1 : std::max(1, static_cast<int>(std::ceil(80.0f / t.zoom.x)));
    for (int c = (first_col + step_x - 1) / step_x * step_x; c <= last_col; c += step_x) {
      const float x = px0 + (static_cast<float>(c) + 0.5f - t.origin.x) * t.zoom.x;
      if (x < px0 || x > px1) continue;
      std::string label = token_text ? v.x_ticks[static_cast<size_t>(c)] : std::to_string(c);
      if (token_text) {
        while (label.size() > 1 && ImGui::CalcTextSize(label.c_str()).x > t.zoom.x - 2)
          label.pop_back();
        ++w_->token_labels_;
      }
      const ImVec2 ls = ImGui::CalcTextSize(label.c_str());
      dl->AddLine(ImVec2(x, py1 + 1), ImVec2(x, py1 + 5), dim);
      dl->AddText(ImVec2(x - ls.x / 2, py1 + 6), text, label.c_str());
    }
    // Y ticks: row indices (or labels) every ~40 px.
    const bool row_text = !v.y_ticks.empty() && t.zoom.y >= ImGui::GetFontSize() + 2;
    const int first_row = std::max(0, static_cast<int>(std::floor(t.origin.y)));
    const int last_row = std::min(
        v.map.rows - 1, static_cast<int>(std::floor(t.origin.y + plot.height() / t.zoom.y)));
    const int step_y = row_text ? 1 : std::max(1, static_cast<int>(std::ceil(40.0f / t.zoom.y)));
    for (int r = (first_row + step_y - 1) / step_y * step_y; r <= last_row; r += step_y) {
      const float y = py0 + (static_cast<float>(r) + 0.5f - t.origin.y) * t.zoom.y;
      if (y < py0 || y > py1) continue;
      std::string label = row_text ? v.y_ticks[static_cast<size_t>(r)] : std::to_string(r);
      if (label.size() > 8) label.resize(8);
      const ImVec2 ls = ImGui::CalcTextSize(label.c_str());
      dl->AddLine(ImVec2(px0 - 5, y), ImVec2(px0 - 1, y), dim);
      dl->AddText(ImVec2(px0 - 7 - ls.x, y - ls.y / 2), text, label.c_str());
    }
    // Axis labels.
    const std::string xl = v.x_label + " ->";  // direction of increase (ASCII: default font)
    const ImVec2 xs = ImGui::CalcTextSize(xl.c_str());
    dl->AddText(ImVec2((px0 + px1 - xs.x) / 2, py1 + 26), text, xl.c_str());
    const std::string yl = v.y_label + " (down)";
    dl->AddText(ImVec2(6, py0 - 20), text, yl.c_str());

    draw_legend(dl, plot);

    // Hover tooltip.
    w_->hover_text_.clear();
    const ImGuiIO& io = ImGui::GetIO();
    if (io.MousePos.x >= px0 && io.MousePos.x < px1 && io.MousePos.y >= py0 &&
        io.MousePos.y < py1 && !w_->dragging_) {
      const glm::ivec2 cell =
          t.cell_at(static_cast<int>(io.MousePos.x - px0), static_cast<int>(io.MousePos.y - py0));
      if (cell.x >= 0 && cell.x < v.map.cols && cell.y >= 0 && cell.y < v.map.rows) {
        std::string s = v.y_label + " " + std::to_string(cell.y);
        if (static_cast<size_t>(cell.y) < v.y_ticks.size())
          s += " '" + v.y_ticks[static_cast<size_t>(cell.y)] + "'";
        s += "\n" + v.x_label + " " + std::to_string(cell.x);
        if (static_cast<size_t>(cell.x) < v.x_ticks.size())
          s += " '" + v.x_ticks[static_cast<size_t>(cell.x)] + "'";
        const float val = v.map.at(cell.y, cell.x);
        s += "\n" + v.value_unit + ": " + format_cell_value(v, val);
        ImGui::BeginTooltip();
        ImGui::TextUnformatted(s.c_str());
        ImGui::EndTooltip();
        w_->hover_text_ = QString::fromStdString(s);
      }
    }
  }

  void draw_legend(ImDrawList* dl, const QRect& plot) {
    const HeatmapView& v = w_->view_;
    const ImU32 text = IM_COL32(230, 230, 230, 255);
    const float x0 = static_cast<float>(plot.right() + 16), x1 = x0 + 16;
    const float y0 = static_cast<float>(plot.top()), y1 = static_cast<float>(plot.bottom());
    const auto lut = colormap_table(v.scale.map);
    dl->AddText(ImVec2(x0, y0 - 34), text, "colour:");
    dl->AddText(ImVec2(x0, y0 - 20), text, v.value_unit.c_str());
    if (v.scale.map == Colormap::kCategorical) {
      // One swatch per id in use (palette size at most, then ids repeat), in columns, then
      // the masked colour.
      const int n =
          std::clamp(v.categories > 0 ? v.categories : kCategoricalSize, 1, kCategoricalSize);
      const float h = 14.0f;
      const int per_col = std::max(1, static_cast<int>((y1 - y0) / h) - 1);
      const int ncol = (n + per_col - 1) / per_col;
      const float cw = std::min(60.0f, 170.0f / static_cast<float>(std::max(1, ncol)));
      for (int i = 0; i < n; ++i) {
        const float x = x0 + static_cast<float>(i / per_col) * cw;
        const float y = y0 + static_cast<float>(i % per_col) * h;
        dl->AddRectFilled(ImVec2(x, y), ImVec2(x + 12, y + h - 2),
                          to_imgui(lut[static_cast<size_t>(i)]));
        const std::string label = static_cast<size_t>(i) < v.category_labels.size()
                                      ? v.category_labels[static_cast<size_t>(i)]
                                      : std::to_string(i);
        dl->AddText(ImVec2(x + 14, y - 1), text, label.c_str());
      }
      const float y = y0 + static_cast<float>(std::min(n, per_col)) * h + 4;
      dl->AddRectFilled(ImVec2(x0, y), ImVec2(x0 + 12, y + h - 2), to_imgui(v.scale.masked));
      dl->AddText(ImVec2(x0 + 14, y - 1), text, "none / dense");
      if (v.categories > kCategoricalSize)
        dl->AddText(ImVec2(x0, y + h), text, "ids repeat every 64");
      return;
    }
    // Colour bar, max at the top.
    const int steps = 128;
    for (int i = 0; i < steps; ++i) {
      const float ya = y1 - (y1 - y0) * static_cast<float>(i + 1) / steps;
      const float yb = y1 - (y1 - y0) * static_cast<float>(i) / steps;
      const size_t k = static_cast<size_t>((i + 0.5f) / steps * static_cast<float>(lut.size()));
      dl->AddRectFilled(ImVec2(x0, ya), ImVec2(x1, yb + 1), to_imgui(lut[k]));
    }
    auto tick = [&](float frac, float value) {
      const float y = y1 - (y1 - y0) * frac;
      const std::string s = format_value(value);
      dl->AddLine(ImVec2(x1, y), ImVec2(x1 + 4, y), text);
      dl->AddText(ImVec2(x1 + 6, y - 7), text, s.c_str());
    };
    tick(1.0f, v.scale.max);
    tick(0.0f, v.scale.min);
    if (v.scale.scale == Scale::kLog)
      tick(0.5f, std::sqrt(v.scale.min * v.scale.max));
    else
      tick(0.5f, 0.5f * (v.scale.min + v.scale.max));
    const float ym = y1 + 8;
    dl->AddRectFilled(ImVec2(x0, ym), ImVec2(x1, ym + 12), to_imgui(v.scale.masked));
    dl->AddText(ImVec2(x1 + 6, ym - 1), text, "masked");
    if (v.scale.scale == Scale::kLog) dl->AddText(ImVec2(x0, ym + 16), text, "log scale");
  }

  HeatmapWindow* w_;
  std::unique_ptr<VulkanHeatmapRenderer> heatmap_;
  ImGuiContext* ctx_ = nullptr;
  VkDescriptorPool imgui_pool_ = VK_NULL_HANDLE;
  QElapsedTimer timer_;
};

HeatmapWindow::HeatmapWindow(QWindow* parent) : QVulkanWindow(parent) {
  // Never an SRGB swapchain format: the colormap is already in display (gamma) space.
  setPreferredColorFormats({VK_FORMAT_B8G8R8A8_UNORM, VK_FORMAT_R8G8B8A8_UNORM});
  settle_.setSingleShot(true);
  settle_.setInterval(kSettleMs);
  connect(&settle_, &QTimer::timeout, this, [this] {
    moving_ = false;
    requestUpdate();
  });
}

void HeatmapWindow::view_moved() {
  moving_ = true;
  settle_.start();
  requestUpdate();
}

HeatmapWindow::~HeatmapWindow() {
  // Release the swapchain, our renderer and the device while this is still a QVulkanWindow:
  // from ~QWindow the surface would go first (validation: surface destroyed before swapchain).
  destroy();
}

QVulkanWindowRenderer* HeatmapWindow::createRenderer() {
  return new HeatmapWindowRenderer(this);
}

void HeatmapWindow::set_view(HeatmapView view, bool keep_transform) {
  const bool same_shape = view.map.rows == view_.map.rows && view.map.cols == view_.map.cols;
  view_ = std::move(view);
  data_dirty_ = true;
  if (!keep_transform || (!same_shape && !user_moved_)) fit_pending_ = true;
  requestUpdate();
}

bool HeatmapWindow::update_rows(int first_row, int n_rows, const float* values) {
  if (first_row < 0 || n_rows <= 0 || first_row + n_rows > view_.map.rows) return false;
  const size_t cols = static_cast<size_t>(view_.map.cols);
  std::copy(values, values + static_cast<size_t>(n_rows) * cols,
            view_.map.values.begin() + static_cast<ptrdiff_t>(first_row * cols));
  if (!data_dirty_) {
    rows_dirty_lo_ = rows_dirty_lo_ < 0 ? first_row : std::min(rows_dirty_lo_, first_row);
    rows_dirty_hi_ = std::max(rows_dirty_hi_, first_row + n_rows);
  }
  requestUpdate();
  return true;
}

void HeatmapWindow::set_tick_labels(int col, const std::string& col_label, int row,
                                    const std::string& row_label) {
  if (col >= 0 && static_cast<size_t>(col) < view_.x_ticks.size())
    view_.x_ticks[static_cast<size_t>(col)] = col_label;
  if (row >= 0 && static_cast<size_t>(row) < view_.y_ticks.size())
    view_.y_ticks[static_cast<size_t>(row)] = row_label;
  requestUpdate();
}

void HeatmapWindow::set_selected_row(int row) {
  selected_row_ = row;
  requestUpdate();
}

void HeatmapWindow::set_selected_col(int col) {
  selected_col_ = col;
  requestUpdate();
}

void HeatmapWindow::set_marked_cells(std::vector<std::pair<int, int>> cells) {
  marked_cells_ = std::move(cells);
  requestUpdate();
}

QRect HeatmapWindow::plot_rect() const {
  const QSize sz =
      swapChainImageSize().isEmpty() ? size() * devicePixelRatio() : swapChainImageSize();
  return QRect(kLeft, kTop, std::max(0, sz.width() - kLeft - kRight),
               std::max(0, sz.height() - kTop - kBottom));
}

void HeatmapWindow::mouseMoveEvent(QMouseEvent* e) {
  const QPointF p = e->position();
  if (dragging_) {
    const QPointF d = (p - drag_from_) * devicePixelRatio();
    transform_.pan_by({static_cast<float>(d.x()), static_cast<float>(d.y())});
    drag_from_ = p;
    if (d.x() != 0 || d.y() != 0) {
      user_moved_ = true;
      view_moved();
    }
  }
  mouse_ = p;
  requestUpdate();
}

void HeatmapWindow::mousePressEvent(QMouseEvent* e) {
  const int b = e->button() == Qt::LeftButton ? 0 : e->button() == Qt::RightButton ? 1 : 2;
  mouse_down_[b] = true;
  if (b == 0) {
    dragging_ = true;
    drag_from_ = e->position();
    press_at_ = e->position();
  }
  requestUpdate();
}

void HeatmapWindow::mouseReleaseEvent(QMouseEvent* e) {
  const int b = e->button() == Qt::LeftButton ? 0 : e->button() == Qt::RightButton ? 1 : 2;
  mouse_down_[b] = false;
  if (b == 0) {
    dragging_ = false;
    if ((e->position() - press_at_).manhattanLength() < 4) {
      const QPointF p = e->position() * devicePixelRatio();
      const QRect plot = plot_rect();
      bool on_cell = false;
      if (plot.contains(p.toPoint())) {
        const glm::ivec2 cell = transform_.cell_at(static_cast<int>(p.x()) - plot.x(),
                                                   static_cast<int>(p.y()) - plot.y());
        on_cell = cell.x >= 0 && cell.x < view_.map.cols && cell.y >= 0 && cell.y < view_.map.rows;
        if (on_cell) emit cellClicked(cell.y, cell.x);
      }
      if (!on_cell) emit backgroundClicked();
    }
  }
  requestUpdate();
}

void HeatmapWindow::wheelEvent(QWheelEvent* e) {
  const float notches = static_cast<float>(e->angleDelta().y()) / 120.0f;
  wheel_ += notches;
  const QPointF p = e->position() * devicePixelRatio();
  const QRect plot = plot_rect();
  transform_.zoom_at({static_cast<float>(p.x() - plot.x()), static_cast<float>(p.y() - plot.y())},
                     std::pow(1.25f, notches));
  user_moved_ = true;
  view_moved();
}

bool HeatmapWindow::event(QEvent* e) {
  if (e->type() == QEvent::Leave) {
    mouse_ = {-1, -1};
    hover_text_.clear();
    dragging_ = false;
    requestUpdate();
  }
  return QVulkanWindow::event(e);
}

void HeatmapWindow::resizeEvent(QResizeEvent* e) {
  QVulkanWindow::resizeEvent(e);
  // Every resize (window, dock or splitter) refits the whole map unless the user zoomed or
  // panned: a fit made at a smaller size showed only the first columns after growing.
  if (!user_moved_) fit_pending_ = true;
  requestUpdate();
}

}  // namespace moelab::views
