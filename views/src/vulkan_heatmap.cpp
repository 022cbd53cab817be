// Vulkan heatmap renderer. Plain Vulkan 1.0 through the loader (no Qt Vulkan classes), so it
// runs without a window or display: tests and the CPU-comparison oracle use it headless.
#include <vulkan/vulkan.h>  // before any Qt header (Qt's define VK_NO_PROTOTYPES)

#include "moelab/views/vulkan_heatmap.h"

#include <QImage>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/shaders/heatmap_blit_frag.spv.h"
#include "moelab/shaders/heatmap_blit_vert.spv.h"
#include "moelab/shaders/heatmap_cells_vert.spv.h"
#include "moelab/shaders/heatmap_flat_frag.spv.h"
#include "moelab/shaders/heatmap_frag.spv.h"
#include "moelab/shaders/heatmap_vert.spv.h"

namespace moelab::views {
namespace {

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";
constexpr VkFormat kTargetFormat = VK_FORMAT_R8G8B8A8_UNORM;  // never the SRGB formats
// Uniform slots: one per frame a window may have in flight (QVulkanWindow: up to 3) + offscreen.
constexpr int kUniformSlots = 4;

// Mirrors shaders/heatmap_common.glsl (std140).
struct HeatmapUniforms {
  glm::mat4 data_to_ndc;
  glm::mat4 pixel_to_data;
  glm::vec4 scale;
  glm::vec4 masked;
  glm::ivec4 map_size;
};
static_assert(sizeof(HeatmapUniforms) == 64 + 64 + 16 + 16 + 16);

struct TilePush {
  glm::vec4 rect;
  glm::ivec4 tile;
  glm::ivec4 tex;
};
static_assert(sizeof(TilePush) == 48);

// Pipeline variants (specialization constants of heatmap.frag): kPool 0..2 x kMapping 0..2.
// Footprint variants: 0 general loop, 1 unrolled 3 x 3, 2 coarse (one read).
constexpr int kPoolModes = 3, kMappings = 3, kFootprints = 3;
struct SpecConstants {
  int32_t pool;
  int32_t mapping;
  VkBool32 small_footprint;
  VkBool32 coarse;
};

// Cells of neighbouring tiles copied around each tile (only when the map is tiled), so max
// pooling near a seam sees the same cells as without tiling (exact up to kMaxPoolCells cells
// per pixel).
constexpr int kTileHalo = kMaxPoolCells;

[[noreturn]] void fail(const char* what, VkResult r) {
  throw Error(ErrorKind::Internal,
              std::string("Vulkan: ") + what + " failed (VkResult " + std::to_string(r) + ")");
}
void check(VkResult r, const char* what) {
  if (r != VK_SUCCESS) fail(what, r);
}

VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                              VkDebugUtilsMessageTypeFlagsEXT,
                                              const VkDebugUtilsMessengerCallbackDataEXT* data,
                                              void* user);

struct Image {
  VkImage image = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkImageView view = VK_NULL_HANDLE;
};

struct Buffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void* mapped = nullptr;
  VkDeviceSize size = 0;
};

struct Tile {
  Image image;                         // level 0: R32F, viewed as (v, v, 0, 1)
  std::vector<Image> pyr;              // pyramid levels 1..: RG32F (max, min)
  std::vector<VkDescriptorSet> sets;   // per level 0..: the level's texture
  int x = 0, y = 0, w = 0, h = 0;      // columns/rows owned (drawn) by this tile
  int tx = 0, ty = 0, tw = 0, th = 0;  // columns/rows held by the texture (owned + halo)
  // The level-k cells covering [tx, tx + tw) x [ty, ty + th): first and count, per level.
  glm::ivec4 level_tex(int k) const {
    const int x0 = tx >> k, y0 = ty >> k;
    return {x0, y0, ((tx + tw - 1) >> k) - x0 + 1, ((ty + th - 1) >> k) - y0 + 1};
  }
};

}  // namespace

struct VulkanHeatmapRenderer::Impl {
  VkInstance instance = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties props{};
  VkPhysicalDeviceMemoryProperties mem_props{};
  VkDevice device = VK_NULL_HANDLE;
  uint32_t queue_family = 0;
  VkQueue queue = VK_NULL_HANDLE;
  VkCommandPool pool = VK_NULL_HANDLE;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
  VkSampler sampler = VK_NULL_HANDLE;
  VkDescriptorSetLayout global_layout = VK_NULL_HANDLE;
  VkDescriptorSetLayout tile_layout = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout = VK_NULL_HANDLE;
  VkRenderPass render_pass = VK_NULL_HANDLE;
  // Pipelines per variant [pool][mapping], created on first use: offscreen and window pass.
  using Pipelines = VkPipeline[kPoolModes][kMappings][kFootprints];
  Pipelines pipelines = {};
  Pipelines window_pipelines = {};
  // Flat cells (heatmap_cells.vert + heatmap_flat.frag) for the window pass, per mapping.
  VkPipeline window_flat[kMappings] = {};
  VkPipeline offscreen_flat[kMappings] = {};  // also used in cache_pass (compatible)
  VkRenderPass window_pass = VK_NULL_HANDLE;
  // The window's heatmap cache (prepare/record): the plot drawn into `cache` by cache_pass
  // (compatible with render_pass, so the offscreen pipelines draw it) when the data, scale,
  // view or size changed; each window frame then copies it (blit_pipeline). Frames that only
  // change the overlays (hover tooltip, selection outline) skip the heatmap shaders.
  struct CacheKey {
    uint64_t data_version = 0;
    int32_t map = 0, scale = 0, max_pool = 0, coarse = 0, w = 0, h = 0;
    float min = 0, max = 0, zoom_x = 0, zoom_y = 0, origin_x = 0, origin_y = 0;
    uint8_t masked[4] = {0, 0, 0, 0};
    bool operator==(const CacheKey&) const = default;
  };
  VkRenderPass cache_pass = VK_NULL_HANDLE;
  VkPipeline blit_pipeline = VK_NULL_HANDLE;
  Image cache;
  VkFramebuffer cache_fb = VK_NULL_HANDLE;
  VkDescriptorPool cache_pool = VK_NULL_HANDLE;
  VkDescriptorSet cache_set = VK_NULL_HANDLE;
  int cache_w = 0, cache_h = 0;
  bool cache_ready = false;
  CacheKey cache_key;
  CacheKey last_key;       // what the previous frame showed
  bool use_cache = false;  // this frame's record() copies the cache
  uint64_t data_version = 0;
  int levels = 0;  // pyramid levels above 0 of the current map
  bool owns_device = true;
  VkDeviceSize slot_stride = 256;
  VkDescriptorPool global_pool = VK_NULL_HANDLE;
  VkDescriptorPool tile_pool = VK_NULL_HANDLE;
  std::array<Image, 3> luts;  // indexed by Colormap
  std::array<VkDescriptorSet, 3> global_sets{};
  Buffer uniforms;
  std::vector<Tile> tiles;
  int rows = 0, cols = 0;
  int tile_edge = 0;
  int max_tile_option = 0;
  // Offscreen target.
  Image target;
  VkFramebuffer framebuffer = VK_NULL_HANDLE;
  Buffer readback;
  int target_w = 0, target_h = 0;
  ValidationCounts counts;

  ~Impl() { destroy(); }

  uint32_t memory_type(uint32_t bits, VkMemoryPropertyFlags want) const {
    for (uint32_t i = 0; i < mem_props.memoryTypeCount; ++i)
      if ((bits & (1u << i)) && (mem_props.memoryTypes[i].propertyFlags & want) == want) return i;
    throw Error(ErrorKind::Internal, "Vulkan: no suitable memory type");
  }

  Buffer make_buffer(VkDeviceSize size, VkBufferUsageFlags usage) {
    Buffer b;
    b.size = size;
    VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bi.size = size;
    bi.usage = usage;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    check(vkCreateBuffer(device, &bi, nullptr, &b.buffer), "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device, b.buffer, &req);
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                             VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    check(vkAllocateMemory(device, &ai, nullptr, &b.memory), "vkAllocateMemory(buffer)");
    check(vkBindBufferMemory(device, b.buffer, b.memory, 0), "vkBindBufferMemory");
    check(vkMapMemory(device, b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped), "vkMapMemory");
    return b;
  }
  void free_buffer(Buffer& b) {
    if (b.memory) vkFreeMemory(device, b.memory, nullptr);  // unmaps implicitly
    if (b.buffer) vkDestroyBuffer(device, b.buffer, nullptr);
    b = {};
  }

  Image make_image(int w, int h, VkFormat format, VkImageUsageFlags usage,
                   bool red_as_green = false) {
    Image im;
    VkImageCreateInfo ii{VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO};
    ii.imageType = VK_IMAGE_TYPE_2D;
    ii.format = format;
    ii.extent = {static_cast<uint32_t>(w), static_cast<uint32_t>(h), 1};
    ii.mipLevels = 1;
    ii.arrayLayers = 1;
    ii.samples = VK_SAMPLE_COUNT_1_BIT;
    ii.tiling = VK_IMAGE_TILING_OPTIMAL;
    ii.usage = usage;
    ii.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    ii.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    check(vkCreateImage(device, &ii, nullptr, &im.image), "vkCreateImage");
    VkMemoryRequirements req;
    vkGetImageMemoryRequirements(device, im.image, &req);
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    check(vkAllocateMemory(device, &ai, nullptr, &im.memory), "vkAllocateMemory(image)");
    check(vkBindImageMemory(device, im.image, im.memory, 0), "vkBindImageMemory");
    VkImageViewCreateInfo vi{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
    vi.image = im.image;
    vi.viewType = VK_IMAGE_VIEW_TYPE_2D;
    vi.format = format;
    if (red_as_green) vi.components.g = VK_COMPONENT_SWIZZLE_R;
    vi.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    check(vkCreateImageView(device, &vi, nullptr, &im.view), "vkCreateImageView");
    return im;
  }
  void free_image(Image& im) {
    if (im.view) vkDestroyImageView(device, im.view, nullptr);
    if (im.image) vkDestroyImage(device, im.image, nullptr);
    if (im.memory) vkFreeMemory(device, im.memory, nullptr);
    im = {};
  }

  void begin() {
    check(vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer");
  }
  void submit_and_wait() {
    check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer");
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd;
    check(vkResetFences(device, 1, &fence), "vkResetFences");
    check(vkQueueSubmit(queue, 1, &si, fence), "vkQueueSubmit");
    check(vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
  }

  // Copies `bytes` into a sampled image (UNDEFINED -> SHADER_READ_ONLY_OPTIMAL), through a
  // staging buffer. row_pitch_texels: texels per source row (sub-rectangle upload).
  void upload(const Image& im, int w, int h, const void* data, size_t texel_bytes,
              size_t src_row_texels) {
    Buffer staging = make_buffer(static_cast<VkDeviceSize>(w) * h * texel_bytes,
                                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT);
    auto* dst = static_cast<uint8_t*>(staging.mapped);
    const auto* src = static_cast<const uint8_t*>(data);
    for (int y = 0; y < h; ++y)
      std::memcpy(dst + static_cast<size_t>(y) * w * texel_bytes,
                  src + static_cast<size_t>(y) * src_row_texels * texel_bytes, w * texel_bytes);
    begin();
    VkImageMemoryBarrier b{VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER};
    b.srcQueueFamilyIndex = b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    b.image = im.image;
    b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    b.oldLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    b.newLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
    b.srcAccessMask = 0;
    b.dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                         0, nullptr, 0, nullptr, 1, &b);
    VkBufferImageCopy region{};
    region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    region.imageExtent = {static_cast<uint32_t>(w), static_cast<uint32_t>(h), 1};
    vkCmdCopyBufferToImage(cmd, staging.buffer, im.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1,
                           &region);
    b.oldLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
    b.newLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL;
    b.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT,
                         0, 0, nullptr, 0, nullptr, 1, &b);
    submit_and_wait();
    free_buffer(staging);
  }

  // One texture's cells for upload_all: w x h texels of texel_bytes, source rows row_texels
  // texels apart.
  struct Region {
    VkImage image;
    int w, h;
    const uint8_t* src;
    size_t texel_bytes, row_texels;
  };
  Buffer staging;  // kept between set_data calls up to kKeepStagingBytes (no page-fault churn)
  static constexpr VkDeviceSize kKeepStagingBytes = VkDeviceSize{64} << 20;

  // Copies every region into its (new) image through one staging buffer, one command buffer
  // and one wait; images end in SHADER_READ_ONLY_OPTIMAL.
  void upload_all(const std::vector<Region>& regions) {
    if (regions.empty()) return;
    VkDeviceSize total = 0;
    std::vector<VkDeviceSize> offsets;
    for (const Region& r : regions) {
      offsets.push_back(total);
      total += (static_cast<VkDeviceSize>(r.w) * r.h * r.texel_bytes + 15) / 16 * 16;
    }
    if (staging.size < total) {
      free_buffer(staging);
      staging = make_buffer(total, VK_BUFFER_USAGE_TRANSFER_SRC_BIT);
    }
    auto* dst = static_cast<uint8_t*>(staging.mapped);
    for (size_t i = 0; i < regions.size(); ++i) {
      const Region& r = regions[i];
      const size_t row = static_cast<size_t>(r.w) * r.texel_bytes;
      for (int y = 0; y < r.h; ++y)
        std::memcpy(dst + offsets[i] + static_cast<size_t>(y) * row,
                    r.src + static_cast<size_t>(y) * r.row_texels * r.texel_bytes, row);
    }
    begin();
    std::vector<VkImageMemoryBarrier> bs(regions.size(), {VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER});
    for (size_t i = 0; i < regions.size(); ++i) {
      VkImageMemoryBarrier& b = bs[i];
      b.srcQueueFamilyIndex = b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
      b.image = regions[i].image;
      b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
      b.oldLayout = VK_IMAGE_LAYOUT_UNDEFINED;
      b.newLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
      b.dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    }
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                         0, nullptr, 0, nullptr, static_cast<uint32_t>(bs.size()), bs.data());
    for (size_t i = 0; i < regions.size(); ++i) {
      VkBufferImageCopy region{};
      region.bufferOffset = offsets[i];
      region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
      region.imageExtent = {static_cast<uint32_t>(regions[i].w),
                            static_cast<uint32_t>(regions[i].h), 1};
      vkCmdCopyBufferToImage(cmd, staging.buffer, regions[i].image,
                             VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &region);
    }
    for (VkImageMemoryBarrier& b : bs) {
      b.oldLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
      b.newLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL;
      b.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
      b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT;
    }
    vkCmdPipelineBarrier(
        cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
        VK_PIPELINE_STAGE_VERTEX_SHADER_BIT | VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT, 0, 0, nullptr,
        0, nullptr, static_cast<uint32_t>(bs.size()), bs.data());
    submit_and_wait();
    if (staging.size > kKeepStagingBytes) free_buffer(staging);
  }

  void create_instance(const VulkanOptions& opt) {
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> layers(n);
    vkEnumerateInstanceLayerProperties(&n, layers.data());
    bool have_validation = false;
    for (const auto& l : layers)
      if (std::strcmp(l.layerName, kValidationLayer) == 0) have_validation = true;
    const char* env = std::getenv("VK_INSTANCE_LAYERS");
    const bool env_validation = env && std::strstr(env, kValidationLayer) != nullptr;
    std::vector<const char*> enable_layers;
    if (opt.validation && have_validation && !env_validation)
      enable_layers.push_back(kValidationLayer);
    counts.layer_active = have_validation && (opt.validation || env_validation);

    n = 0;
    vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr);
    std::vector<VkExtensionProperties> exts(n);
    vkEnumerateInstanceExtensionProperties(nullptr, &n, exts.data());
    bool have_debug_utils = false;
    for (const auto& e : exts)
      if (std::strcmp(e.extensionName, VK_EXT_DEBUG_UTILS_EXTENSION_NAME) == 0)
        have_debug_utils = true;
    if (counts.layer_active) have_debug_utils = true;  // the layer itself provides it
    std::vector<const char*> enable_exts;
    if (have_debug_utils) enable_exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);

    VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "moelab views";
    app.apiVersion = VK_API_VERSION_1_0;
    VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ci.pApplicationInfo = &app;
    ci.enabledLayerCount = static_cast<uint32_t>(enable_layers.size());
    ci.ppEnabledLayerNames = enable_layers.data();
    ci.enabledExtensionCount = static_cast<uint32_t>(enable_exts.size());
    ci.ppEnabledExtensionNames = enable_exts.data();
    check(vkCreateInstance(&ci, nullptr, &instance), "vkCreateInstance");

    if (have_debug_utils) {
      auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
          vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT"));
      if (create) {
        VkDebugUtilsMessengerCreateInfoEXT mi{
            VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
        mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                             VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
        mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
        mi.pfnUserCallback = debug_callback;
        mi.pUserData = &counts;
        counts.messenger_active = create(instance, &mi, nullptr, &messenger) == VK_SUCCESS;
      }
    }
  }

  // Picks the first device with a graphics queue that can sample R32_SFLOAT and render to
  // R8G8B8A8_UNORM. Returns false when there is none.
  bool pick_device() {
    uint32_t n = 0;
    if (vkEnumeratePhysicalDevices(instance, &n, nullptr) != VK_SUCCESS || n == 0) return false;
    std::vector<VkPhysicalDevice> devs(n);
    vkEnumeratePhysicalDevices(instance, &n, devs.data());
    for (VkPhysicalDevice d : devs) {
      uint32_t qn = 0;
      vkGetPhysicalDeviceQueueFamilyProperties(d, &qn, nullptr);
      std::vector<VkQueueFamilyProperties> qs(qn);
      vkGetPhysicalDeviceQueueFamilyProperties(d, &qn, qs.data());
      VkFormatProperties fp_data, fp_target;
      vkGetPhysicalDeviceFormatProperties(d, VK_FORMAT_R32_SFLOAT, &fp_data);
      vkGetPhysicalDeviceFormatProperties(d, kTargetFormat, &fp_target);
      if (!(fp_data.optimalTilingFeatures & VK_FORMAT_FEATURE_SAMPLED_IMAGE_BIT) ||
          !(fp_target.optimalTilingFeatures & VK_FORMAT_FEATURE_COLOR_ATTACHMENT_BIT) ||
          !(fp_target.optimalTilingFeatures & VK_FORMAT_FEATURE_SAMPLED_IMAGE_BIT))
        continue;
      for (uint32_t i = 0; i < qn; ++i) {
        if (qs[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) {
          physical = d;
          queue_family = i;
          vkGetPhysicalDeviceProperties(d, &props);
          vkGetPhysicalDeviceMemoryProperties(d, &mem_props);
          return true;
        }
      }
    }
    return false;
  }

  void create_device() {
    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qi{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qi.queueFamilyIndex = queue_family;
    qi.queueCount = 1;
    qi.pQueuePriorities = &prio;
    VkDeviceCreateInfo di{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    check(vkCreateDevice(physical, &di, nullptr, &device), "vkCreateDevice");
    vkGetDeviceQueue(device, queue_family, 0, &queue);
    create_device_objects();
  }

  // Command pool, fence, sampler: on our own device or on a window's.
  void create_device_objects() {
    VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pi.queueFamilyIndex = queue_family;
    check(vkCreateCommandPool(device, &pi, nullptr, &pool), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = pool;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    check(vkAllocateCommandBuffers(device, &ai, &cmd), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    check(vkCreateFence(device, &fi, nullptr, &fence), "vkCreateFence");

    // Nearest everywhere; cells and lookup entries are read with texelFetch anyway.
    VkSamplerCreateInfo si{VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO};
    si.magFilter = si.minFilter = VK_FILTER_NEAREST;
    si.mipmapMode = VK_SAMPLER_MIPMAP_MODE_NEAREST;
    si.addressModeU = si.addressModeV = si.addressModeW = VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE;
    si.maxLod = 0.0f;
    check(vkCreateSampler(device, &si, nullptr, &sampler), "vkCreateSampler");
  }

  VkShaderModule make_module(const uint32_t* code, size_t words) {
    VkShaderModuleCreateInfo ci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    ci.codeSize = words * 4;
    ci.pCode = code;
    VkShaderModule m;
    check(vkCreateShaderModule(device, &ci, nullptr, &m), "vkCreateShaderModule");
    return m;
  }

  void create_pipeline() {
    // set 0: uniforms + colormap lookup; set 1: one tile of cells.
    VkDescriptorSetLayoutBinding g[2]{};
    g[0].binding = 0;
    g[0].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC;
    g[0].descriptorCount = 1;
    g[0].stageFlags = VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT;
    g[1].binding = 1;
    g[1].descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
    g[1].descriptorCount = 1;
    g[1].stageFlags = VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT;
    VkDescriptorSetLayoutCreateInfo li{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    li.bindingCount = 2;
    li.pBindings = g;
    check(vkCreateDescriptorSetLayout(device, &li, nullptr, &global_layout), "set layout 0");
    VkDescriptorSetLayoutBinding t{};
    t.binding = 0;
    t.descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
    t.descriptorCount = 1;
    t.stageFlags = VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT;
    li.bindingCount = 1;
    li.pBindings = &t;
    check(vkCreateDescriptorSetLayout(device, &li, nullptr, &tile_layout), "set layout 1");

    VkPushConstantRange pr{VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT, 0,
                           sizeof(TilePush)};
    VkDescriptorSetLayout sets[2] = {global_layout, tile_layout};
    VkPipelineLayoutCreateInfo pli{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    pli.setLayoutCount = 2;
    pli.pSetLayouts = sets;
    pli.pushConstantRangeCount = 1;
    pli.pPushConstantRanges = &pr;
    check(vkCreatePipelineLayout(device, &pli, nullptr, &pipeline_layout), "pipeline layout");

    VkAttachmentDescription att{};
    att.format = kTargetFormat;
    att.samples = VK_SAMPLE_COUNT_1_BIT;
    att.loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR;
    att.storeOp = VK_ATTACHMENT_STORE_OP_STORE;
    att.stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE;
    att.stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE;
    att.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    att.finalLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
    VkAttachmentReference ref{0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL};
    VkSubpassDescription sub{};
    sub.pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS;
    sub.colorAttachmentCount = 1;
    sub.pColorAttachments = &ref;
    VkSubpassDependency deps[2]{};
    deps[0].srcSubpass = VK_SUBPASS_EXTERNAL;  // previous readback copy -> this frame's writes
    deps[0].dstSubpass = 0;
    // (The window cache pass below reads its image in fragment shaders instead of copying it;
    // both passes list both uses so that they stay compatible and share pipelines.)
    deps[0].srcStageMask = VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT;
    deps[0].dstStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
    deps[0].srcAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_SHADER_READ_BIT;
    deps[0].dstAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
    deps[1].srcSubpass = 0;  // this frame's writes -> readback copy
    deps[1].dstSubpass = VK_SUBPASS_EXTERNAL;
    deps[1].srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
    deps[1].dstStageMask = VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT;
    deps[1].srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
    deps[1].dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_SHADER_READ_BIT;
    VkRenderPassCreateInfo rpi{VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO};
    rpi.attachmentCount = 1;
    rpi.pAttachments = &att;
    rpi.subpassCount = 1;
    rpi.pSubpasses = &sub;
    rpi.dependencyCount = 2;
    rpi.pDependencies = deps;
    check(vkCreateRenderPass(device, &rpi, nullptr, &render_pass), "vkCreateRenderPass");
    // The window's cache: the same pass (compatible), left ready for sampling; the
    // dependencies order its writes after the previous frame's reads and before this frame's.
    att.finalLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL;
    check(vkCreateRenderPass(device, &rpi, nullptr, &cache_pass), "vkCreateRenderPass(cache)");
  }

  VkPipeline pipeline_for(bool window, int pool, int mapping, int footprint) {
    VkPipeline& p = (window ? window_pipelines : pipelines)[pool][mapping][footprint];
    if (!p) p = make_pipeline(window ? window_pass : render_pass, pool, mapping, footprint);
    return p;
  }
  void destroy_pipelines(Pipelines& ps) {
    for (auto& a : ps)
      for (auto& b : a)
        for (VkPipeline& p : b) {
          if (p) vkDestroyPipeline(device, p, nullptr);
          p = VK_NULL_HANDLE;
        }
  }

  VkPipeline flat_pipeline(bool window, int mapping) {
    VkPipeline& p = (window ? window_flat : offscreen_flat)[mapping];
    if (!p) p = make_pipeline(window ? window_pass : render_pass, 0, mapping, 0, kFlat);
    return p;
  }

  enum Kind { kHeat, kFlat, kBlit };
  VkPipeline make_pipeline(VkRenderPass pass, int pool, int mapping, int footprint,
                           Kind kind = kHeat) {
    const bool flat = kind == kFlat;
    VkShaderModule vs =
        kind == kBlit ? make_module(k_heatmap_blit_vert_spv, std::size(k_heatmap_blit_vert_spv))
        : flat        ? make_module(k_heatmap_cells_vert_spv, std::size(k_heatmap_cells_vert_spv))
                      : make_module(k_heatmap_vert_spv, std::size(k_heatmap_vert_spv));
    VkShaderModule fs =
        kind == kBlit ? make_module(k_heatmap_blit_frag_spv, std::size(k_heatmap_blit_frag_spv))
        : flat        ? make_module(k_heatmap_flat_frag_spv, std::size(k_heatmap_flat_frag_spv))
                      : make_module(k_heatmap_frag_spv, std::size(k_heatmap_frag_spv));
    VkPipelineShaderStageCreateInfo stages[2]{};
    stages[0].sType = stages[1].sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    stages[0].stage = VK_SHADER_STAGE_VERTEX_BIT;
    stages[0].module = vs;
    stages[0].pName = "main";
    stages[1].stage = VK_SHADER_STAGE_FRAGMENT_BIT;
    stages[1].module = fs;
    stages[1].pName = "main";
    const SpecConstants spec{pool, mapping, footprint == 1 ? VK_TRUE : VK_FALSE,
                             footprint == 2 ? VK_TRUE : VK_FALSE};
    const VkSpecializationMapEntry entries[4] = {{0, offsetof(SpecConstants, pool), 4},
                                                 {1, offsetof(SpecConstants, mapping), 4},
                                                 {2, offsetof(SpecConstants, small_footprint), 4},
                                                 {3, offsetof(SpecConstants, coarse), 4}};
    VkSpecializationInfo spec_info{4, entries, sizeof(spec), &spec};
    (flat ? stages[0] : stages[1]).pSpecializationInfo = &spec_info;
    VkPipelineVertexInputStateCreateInfo vi{
        VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO};
    VkPipelineInputAssemblyStateCreateInfo ia{
        VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO};
    ia.topology = VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST;
    VkPipelineViewportStateCreateInfo vp{VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO};
    vp.viewportCount = 1;
    vp.scissorCount = 1;
    VkPipelineRasterizationStateCreateInfo rs{
        VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO};
    rs.polygonMode = VK_POLYGON_MODE_FILL;
    rs.cullMode = VK_CULL_MODE_NONE;
    rs.frontFace = VK_FRONT_FACE_COUNTER_CLOCKWISE;
    rs.lineWidth = 1.0f;
    VkPipelineMultisampleStateCreateInfo ms{
        VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO};
    ms.rasterizationSamples = VK_SAMPLE_COUNT_1_BIT;
    VkPipelineColorBlendAttachmentState cb{};
    cb.colorWriteMask = VK_COLOR_COMPONENT_R_BIT | VK_COLOR_COMPONENT_G_BIT |
                        VK_COLOR_COMPONENT_B_BIT | VK_COLOR_COMPONENT_A_BIT;
    if (kind == kBlit) {  // the cache is transparent outside the map
      cb.blendEnable = VK_TRUE;
      cb.srcColorBlendFactor = VK_BLEND_FACTOR_SRC_ALPHA;
      cb.dstColorBlendFactor = VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA;
      cb.colorBlendOp = VK_BLEND_OP_ADD;
      cb.srcAlphaBlendFactor = VK_BLEND_FACTOR_ONE;
      cb.dstAlphaBlendFactor = VK_BLEND_FACTOR_ONE_MINUS_SRC_ALPHA;
      cb.alphaBlendOp = VK_BLEND_OP_ADD;
    }
    VkPipelineColorBlendStateCreateInfo cbs{
        VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO};
    cbs.attachmentCount = 1;
    cbs.pAttachments = &cb;
    VkDynamicState dyn[2] = {VK_DYNAMIC_STATE_VIEWPORT, VK_DYNAMIC_STATE_SCISSOR};
    VkPipelineDynamicStateCreateInfo ds{VK_STRUCTURE_TYPE_PIPELINE_DYNAMIC_STATE_CREATE_INFO};
    ds.dynamicStateCount = 2;
    ds.pDynamicStates = dyn;
    VkGraphicsPipelineCreateInfo gi{VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO};
    gi.stageCount = 2;
    gi.pStages = stages;
    gi.pVertexInputState = &vi;
    gi.pInputAssemblyState = &ia;
    gi.pViewportState = &vp;
    gi.pRasterizationState = &rs;
    gi.pMultisampleState = &ms;
    gi.pColorBlendState = &cbs;
    // No depth test or write: needed when the (window) render pass has a depth attachment.
    VkPipelineDepthStencilStateCreateInfo dss{
        VK_STRUCTURE_TYPE_PIPELINE_DEPTH_STENCIL_STATE_CREATE_INFO};
    dss.depthCompareOp = VK_COMPARE_OP_ALWAYS;
    gi.pDepthStencilState = &dss;
    gi.pDynamicState = &ds;
    gi.layout = pipeline_layout;
    gi.renderPass = pass;
    VkPipeline out = VK_NULL_HANDLE;
    const VkResult r = vkCreateGraphicsPipelines(device, VK_NULL_HANDLE, 1, &gi, nullptr, &out);
    vkDestroyShaderModule(device, vs, nullptr);
    vkDestroyShaderModule(device, fs, nullptr);
    check(r, "vkCreateGraphicsPipelines");
    return out;
  }

  // Writes the uniforms of one draw into `slot`. offset_px: framebuffer position of the
  // viewport's top-left corner (gl_FragCoord is framebuffer-absolute).
  void write_uniforms(int slot, const ColorScale& scale, const ViewTransform& view, int width,
                      int height, glm::vec2 offset_px, int level) {
    const ScaleParams p = scale_params(scale);
    HeatmapUniforms u{};
    // viewport pixel -> NDC: x' = 2x/W - 1, y' = 2y/H - 1 (Vulkan's y points down, like ours).
    glm::mat4 ndc(1.0f);
    ndc[0][0] = 2.0f / static_cast<float>(width);
    ndc[1][1] = 2.0f / static_cast<float>(height);
    ndc[3][0] = -1.0f;
    ndc[3][1] = -1.0f;
    u.data_to_ndc = ndc * view.view_matrix();
    glm::mat4 unshift(1.0f);
    unshift[3][0] = -offset_px.x;
    unshift[3][1] = -offset_px.y;
    u.pixel_to_data = view.pixel_to_data() * unshift;
    u.scale = {p.offset, p.mul, p.log ? 1.0f : 0.0f, p.categorical ? 1.0f : 0.0f};
    u.masked = glm::vec4(scale.masked.r, scale.masked.g, scale.masked.b, scale.masked.a) / 255.0f;
    u.map_size = {cols, rows, p.lut_size, level};
    std::memcpy(static_cast<uint8_t*>(uniforms.mapped) + slot * slot_stride, &u, sizeof(u));
  }

  // The variant and pyramid level a draw uses.
  struct Variant {
    int pool = 0, mapping = 0, level = 0;
    int footprint = 0;  // 0: general loop, 1: at most 3 x 3 level-k cells, 2: coarse
  };
  Variant variant(const ColorScale& scale, const ViewTransform& view) const {
    const ScaleParams p = scale_params(scale);
    Variant v;
    v.mapping = p.categorical ? 2 : p.log ? 1 : 0;
    v.pool = p.categorical ? 0 : p.pool;
    // At most 0.9 cells per pixel along both axes: every pixel's footprint is its own cell, so
    // pooling reads exactly the nearest cell; the cheaper nearest variant gives the same image.
    const glm::mat4 inv = view.pixel_to_data();
    if (std::fabs(inv[0][0]) < 0.9f && std::fabs(inv[1][1]) < 0.9f) v.pool = 0;
    if (v.pool && scale.coarse_pool) {
      v.level = coarse_pool_level(view, levels);
      v.footprint = 2;
    } else if (v.pool) {
      v.level = pool_level(view, levels);
      // Level-k cells a pixel touches along an axis with f cells per pixel: at most
      // ceil((hi - lo) / 2^k) + 1 with hi - lo <= ceil(f) + 1 (heatmap.frag); 0.01 covers float
      // rounding of the pixel edges.
      const float block = std::ldexp(1.0f, v.level + 1);
      auto small = [&](float f) { return f < 0.9f || std::ceil(f + 0.01f) + 1.0f <= block; };
      v.footprint = small(std::fabs(inv[0][0])) && small(std::fabs(inv[1][1])) ? 1 : 0;
    }
    return v;
  }

  // Uniforms of slot `slot` + the tile draws into `c`, inside a render pass (offscreen or the
  // attached window pass).
  void draw(VkCommandBuffer c, bool window, bool allow_flat, int slot, const ColorScale& scale,
            const ViewTransform& view, VkRect2D area) {
    const Variant var = variant(scale, view);
    write_uniforms(slot, scale, view, static_cast<int>(area.extent.width),
                   static_cast<int>(area.extent.height),
                   {static_cast<float>(area.offset.x), static_cast<float>(area.offset.y)},
                   var.level);
    if (tiles.empty()) return;
    if (allow_flat && var.pool == 0 && record_flat(c, window, var.mapping, slot, scale, view, area))
      return;
    record_draws(c, pipeline_for(window, var.pool, var.mapping, var.footprint), slot, scale, area,
                 var.level);
  }

  // The window's fast path when zoomed in (>= 2 pixels per cell on both axes and on average
  // >= 16 pixels per visible cell): one instanced quad per visible cell, coloured per cell in
  // the vertex shader, so the per-pixel work is a flat fill. Cell edges then follow the
  // rasterizer's coverage rule instead of heatmap.frag's floor(pixel centre + kCellEdgeBias):
  // a pixel whose centre lies within 1/256 pixel of a cell edge may take the neighbour's
  // colour. The offscreen render() (what the pixel tests compare with the CPU) never uses it.
  // Returns false (nothing recorded) when the view does not qualify.
  bool record_flat(VkCommandBuffer c, bool window, int mapping, int slot, const ColorScale& scale,
                   const ViewTransform& view, VkRect2D area) {
    const glm::mat4 inv = view.pixel_to_data();
    if (!(std::fabs(inv[0][0]) <= 0.5f && std::fabs(inv[1][1]) <= 0.5f)) return false;
    const float x0 = view.origin.x, y0 = view.origin.y;
    const float x1 = x0 + static_cast<float>(area.extent.width) * inv[0][0];
    const float y1 = y0 + static_cast<float>(area.extent.height) * inv[1][1];
    std::vector<std::pair<const Tile*, glm::ivec4>> blocks;  // tile, (c0, r0, w, h)
    int64_t cells = 0;
    for (const Tile& t : tiles) {
      const int c0 = std::max(t.x, static_cast<int>(std::floor(x0)));
      const int r0 = std::max(t.y, static_cast<int>(std::floor(y0)));
      const int c1 = std::min(t.x + t.w, static_cast<int>(std::ceil(x1)));
      const int r1 = std::min(t.y + t.h, static_cast<int>(std::ceil(y1)));
      if (c1 <= c0 || r1 <= r0) continue;
      blocks.push_back({&t, {c0, r0, c1 - c0, r1 - r0}});
      cells += static_cast<int64_t>(c1 - c0) * (r1 - r0);
    }
    const int64_t pixels = static_cast<int64_t>(area.extent.width) * area.extent.height;
    if (cells * 16 > pixels) return false;
    if (blocks.empty()) return true;
    vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_GRAPHICS, flat_pipeline(window, mapping));
    VkViewport vp{static_cast<float>(area.offset.x),
                  static_cast<float>(area.offset.y),
                  static_cast<float>(area.extent.width),
                  static_cast<float>(area.extent.height),
                  0,
                  1};
    vkCmdSetViewport(c, 0, 1, &vp);
    vkCmdSetScissor(c, 0, 1, &area);
    const uint32_t dyn = static_cast<uint32_t>(slot * slot_stride);
    vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 0, 1,
                            &global_sets[static_cast<int>(scale.map)], 1, &dyn);
    for (const auto& [t, b] : blocks) {
      TilePush push{{0.0f, 0.0f, 0.0f, 0.0f}, {b.x, b.y, b.z, b.w}, t->level_tex(0)};
      vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 1, 1,
                              &t->sets[0], 0, nullptr);
      vkCmdPushConstants(c, pipeline_layout,
                         VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof(push),
                         &push);
      vkCmdDraw(c, 6, static_cast<uint32_t>(b.z) * static_cast<uint32_t>(b.w), 0, 0);
    }
    return true;
  }

  void free_cache() {
    if (cache_fb) vkDestroyFramebuffer(device, cache_fb, nullptr);
    cache_fb = VK_NULL_HANDLE;
    free_image(cache);
    cache_w = cache_h = 0;
    cache_ready = false;
  }

  // (Re)creates the cache image for a w x h plot; waits for the device (a resize).
  void ensure_cache(int w, int h) {
    if (w == cache_w && h == cache_h) return;
    vkDeviceWaitIdle(device);
    free_cache();
    cache = make_image(w, h, kTargetFormat,
                       VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_SAMPLED_BIT);
    VkFramebufferCreateInfo fi{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
    fi.renderPass = cache_pass;
    fi.attachmentCount = 1;
    fi.pAttachments = &cache.view;
    fi.width = static_cast<uint32_t>(w);
    fi.height = static_cast<uint32_t>(h);
    fi.layers = 1;
    check(vkCreateFramebuffer(device, &fi, nullptr, &cache_fb), "vkCreateFramebuffer(cache)");
    if (!cache_pool) {
      VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 1};
      VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
      pi.maxSets = 1;
      pi.poolSizeCount = 1;
      pi.pPoolSizes = &size;
      check(vkCreateDescriptorPool(device, &pi, nullptr, &cache_pool), "cache descriptor pool");
      VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
      ai.descriptorPool = cache_pool;
      ai.descriptorSetCount = 1;
      ai.pSetLayouts = &tile_layout;
      check(vkAllocateDescriptorSets(device, &ai, &cache_set), "cache set");
    }
    VkDescriptorImageInfo ii{sampler, cache.view, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL};
    VkWriteDescriptorSet wr{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    wr.dstSet = cache_set;
    wr.dstBinding = 0;
    wr.descriptorCount = 1;
    wr.descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
    wr.pImageInfo = &ii;
    vkUpdateDescriptorSets(device, 1, &wr, 0, nullptr);
    cache_w = w;
    cache_h = h;
  }

  // Draws the plot into the cache when anything it shows changed (outside any render pass).
  void prepare(VkCommandBuffer c, int slot, int w, int h, const ColorScale& scale,
               const ViewTransform& view) {
    ensure_cache(w, h);
    CacheKey k;
    k.data_version = data_version;
    k.map = static_cast<int32_t>(scale.map);
    k.scale = static_cast<int32_t>(scale.scale);
    k.max_pool = scale.max_pool;
    k.coarse = scale.coarse_pool;
    k.w = w;
    k.h = h;
    k.min = scale.min;
    k.max = scale.max;
    k.zoom_x = view.zoom.x;
    k.zoom_y = view.zoom.y;
    k.origin_x = view.origin.x;
    k.origin_y = view.origin.y;
    k.masked[0] = scale.masked.r;
    k.masked[1] = scale.masked.g;
    k.masked[2] = scale.masked.b;
    k.masked[3] = scale.masked.a;
    // A hit: copy. The same picture as the previous frame (the view stopped changing): fill the
    // cache once, then copy. Else (moving, live data) draw directly: a cache that changes
    // every frame would only add the copy.
    use_cache = cache_ready && k == cache_key;
    const bool still = k == last_key;
    last_key = k;
    if (use_cache || !still) return;
    use_cache = true;
    VkClearValue clear{};  // transparent: the window's background shows outside the map
    VkRenderPassBeginInfo rb{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
    rb.renderPass = cache_pass;
    rb.framebuffer = cache_fb;
    rb.renderArea.extent = {static_cast<uint32_t>(w), static_cast<uint32_t>(h)};
    rb.clearValueCount = 1;
    rb.pClearValues = &clear;
    vkCmdBeginRenderPass(c, &rb, VK_SUBPASS_CONTENTS_INLINE);
    draw(c, /*window=*/false, /*allow_flat=*/true, slot, scale, view, rb.renderArea);
    vkCmdEndRenderPass(c);
    cache_key = k;
    cache_ready = true;
  }

  void record_blit(VkCommandBuffer c, VkRect2D area) {
    if (!blit_pipeline) blit_pipeline = make_pipeline(window_pass, 0, 0, 0, kBlit);
    vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_GRAPHICS, blit_pipeline);
    VkViewport vp{static_cast<float>(area.offset.x),
                  static_cast<float>(area.offset.y),
                  static_cast<float>(area.extent.width),
                  static_cast<float>(area.extent.height),
                  0,
                  1};
    vkCmdSetViewport(c, 0, 1, &vp);
    vkCmdSetScissor(c, 0, 1, &area);
    vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 1, 1, &cache_set,
                            0, nullptr);
    TilePush push{{0.0f, 0.0f, 0.0f, 0.0f}, {area.offset.x, area.offset.y, 0, 0}, {0, 0, 0, 0}};
    vkCmdPushConstants(c, pipeline_layout,
                       VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof(push),
                       &push);
    vkCmdDraw(c, 6, 1, 0, 0);
  }

  // Records the tile draws into `c`, inside a render pass compatible with `pipe`.
  void record_draws(VkCommandBuffer c, VkPipeline pipe, int slot, const ColorScale& scale,
                    VkRect2D area, int level) {
    if (tiles.empty()) return;
    vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipe);
    VkViewport vp{static_cast<float>(area.offset.x),
                  static_cast<float>(area.offset.y),
                  static_cast<float>(area.extent.width),
                  static_cast<float>(area.extent.height),
                  0,
                  1};
    vkCmdSetViewport(c, 0, 1, &vp);
    vkCmdSetScissor(c, 0, 1, &area);
    const uint32_t dyn = static_cast<uint32_t>(slot * slot_stride);
    vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 0, 1,
                            &global_sets[static_cast<int>(scale.map)], 1, &dyn);
    for (const Tile& t : tiles) {
      // The quad is the tile grown by one cell on every side: a pixel whose centre falls in
      // the tile's cells is always covered; the fragment shader discards foreign cells.
      TilePush push{{t.x - 1.0f, t.y - 1.0f, t.x + t.w + 1.0f, t.y + t.h + 1.0f},
                    {t.x, t.y, t.w, t.h},
                    t.level_tex(level)};
      vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 1, 1,
                              &t.sets[static_cast<size_t>(level)], 0, nullptr);
      vkCmdPushConstants(c, pipeline_layout,
                         VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof(push),
                         &push);
      vkCmdDraw(c, 6, 1, 0, 0);
    }
  }

  void create_globals() {
    const VkDeviceSize align =
        std::max<VkDeviceSize>(props.limits.minUniformBufferOffsetAlignment, 16);
    slot_stride = (sizeof(HeatmapUniforms) + align - 1) / align * align;
    uniforms = make_buffer(slot_stride * kUniformSlots, VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT);
    VkDescriptorPoolSize sizes[2] = {{VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC, 3},
                                     {VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 3}};
    VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    pi.maxSets = 3;
    pi.poolSizeCount = 2;
    pi.pPoolSizes = sizes;
    check(vkCreateDescriptorPool(device, &pi, nullptr, &global_pool), "descriptor pool");
    for (int m = 0; m < 3; ++m) {
      const auto table = colormap_table(static_cast<Colormap>(m));
      luts[m] = make_image(static_cast<int>(table.size()), 1, VK_FORMAT_R8G8B8A8_UNORM,
                           VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT);
      upload(luts[m], static_cast<int>(table.size()), 1, table.data(), 4, table.size());
      VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
      ai.descriptorPool = global_pool;
      ai.descriptorSetCount = 1;
      ai.pSetLayouts = &global_layout;
      check(vkAllocateDescriptorSets(device, &ai, &global_sets[m]), "descriptor set 0");
      VkDescriptorBufferInfo bi{uniforms.buffer, 0, sizeof(HeatmapUniforms)};
      VkDescriptorImageInfo ii{sampler, luts[m].view, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL};
      VkWriteDescriptorSet w[2]{};
      w[0].sType = w[1].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
      w[0].dstSet = w[1].dstSet = global_sets[m];
      w[0].dstBinding = 0;
      w[0].descriptorCount = 1;
      w[0].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC;
      w[0].pBufferInfo = &bi;
      w[1].dstBinding = 1;
      w[1].descriptorCount = 1;
      w[1].descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
      w[1].pImageInfo = &ii;
      vkUpdateDescriptorSets(device, 2, w, 0, nullptr);
    }
  }

  void free_tiles() {
    if (!device) return;
    for (auto& t : tiles) {
      free_image(t.image);
      for (Image& im : t.pyr) free_image(im);
    }
    tiles.clear();
    levels = 0;
    if (tile_pool) vkDestroyDescriptorPool(device, tile_pool, nullptr);
    tile_pool = VK_NULL_HANDLE;
  }

  void free_target() {
    if (framebuffer) vkDestroyFramebuffer(device, framebuffer, nullptr);
    framebuffer = VK_NULL_HANDLE;
    free_image(target);
    free_buffer(readback);
    target_w = target_h = 0;
  }

  void ensure_target(int w, int h) {
    if (w == target_w && h == target_h) return;
    free_target();
    target = make_image(w, h, kTargetFormat,
                        VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT);
    VkFramebufferCreateInfo fi{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
    fi.renderPass = render_pass;
    fi.attachmentCount = 1;
    fi.pAttachments = &target.view;
    fi.width = static_cast<uint32_t>(w);
    fi.height = static_cast<uint32_t>(h);
    fi.layers = 1;
    check(vkCreateFramebuffer(device, &fi, nullptr, &framebuffer), "vkCreateFramebuffer");
    readback = make_buffer(static_cast<VkDeviceSize>(w) * h * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT);
    target_w = w;
    target_h = h;
  }

  void destroy() {
    if (device) {
      vkDeviceWaitIdle(device);
      free_tiles();
      free_target();
      free_buffer(staging);
      for (auto& l : luts) free_image(l);
      free_buffer(uniforms);
      if (global_pool) vkDestroyDescriptorPool(device, global_pool, nullptr);
      destroy_pipelines(pipelines);
      destroy_pipelines(window_pipelines);
      for (VkPipeline p : window_flat)
        if (p) vkDestroyPipeline(device, p, nullptr);
      for (VkPipeline p : offscreen_flat)
        if (p) vkDestroyPipeline(device, p, nullptr);
      if (blit_pipeline) vkDestroyPipeline(device, blit_pipeline, nullptr);
      free_cache();
      if (cache_pool) vkDestroyDescriptorPool(device, cache_pool, nullptr);
      if (cache_pass) vkDestroyRenderPass(device, cache_pass, nullptr);
      if (render_pass) vkDestroyRenderPass(device, render_pass, nullptr);
      if (pipeline_layout) vkDestroyPipelineLayout(device, pipeline_layout, nullptr);
      if (tile_layout) vkDestroyDescriptorSetLayout(device, tile_layout, nullptr);
      if (global_layout) vkDestroyDescriptorSetLayout(device, global_layout, nullptr);
      if (sampler) vkDestroySampler(device, sampler, nullptr);
      if (fence) vkDestroyFence(device, fence, nullptr);
      if (pool) vkDestroyCommandPool(device, pool, nullptr);
      if (owns_device) vkDestroyDevice(device, nullptr);
      device = VK_NULL_HANDLE;
    }
    if (instance && owns_device) {
      if (messenger) {
        auto destroy_messenger = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
            vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
        if (destroy_messenger) destroy_messenger(instance, messenger, nullptr);
        messenger = VK_NULL_HANDLE;
      }
      vkDestroyInstance(instance, nullptr);
      instance = VK_NULL_HANDLE;
    }
  }
};

namespace {
VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                              VkDebugUtilsMessageTypeFlagsEXT,
                                              const VkDebugUtilsMessengerCallbackDataEXT* data,
                                              void* user) {
  auto* counts = static_cast<ValidationCounts*>(user);
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)
    ++counts->errors;
  else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)
    ++counts->warnings;
  if (data && data->pMessage) counts->last_message = data->pMessage;
  return VK_FALSE;
}
}  // namespace

VulkanHeatmapRenderer::VulkanHeatmapRenderer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VulkanHeatmapRenderer::~VulkanHeatmapRenderer() = default;

std::unique_ptr<VulkanHeatmapRenderer> VulkanHeatmapRenderer::create(const VulkanOptions& options,
                                                                     std::string* why_not) {
  auto impl = std::make_unique<Impl>();
  impl->max_tile_option = options.max_tile;
  try {
    impl->create_instance(options);
    if (!impl->pick_device()) {
      if (why_not) *why_not = "no Vulkan device with a graphics queue";
      return nullptr;
    }
    impl->create_device();
    impl->create_pipeline();
    impl->create_globals();
  } catch (const Error& e) {
    if (why_not) *why_not = e.detail();
    return nullptr;
  }
  return std::unique_ptr<VulkanHeatmapRenderer>(new VulkanHeatmapRenderer(std::move(impl)));
}

void VulkanHeatmapRenderer::set_data(const Heatmap& map) {
  Impl& d = *impl_;
  if (map.rows < 0 || map.cols < 0 ||
      map.values.size() != static_cast<size_t>(map.rows) * static_cast<size_t>(map.cols))
    throw Error(ErrorKind::BadInput, "heatmap: values size does not match rows x cols");
  vkDeviceWaitIdle(d.device);
  d.free_tiles();
  ++d.data_version;
  d.cache_ready = false;
  d.use_cache = false;
  d.rows = map.rows;
  d.cols = map.cols;
  int edge = std::min<int>(static_cast<int>(d.props.limits.maxImageDimension2D), 8192);
  if (d.max_tile_option > 0) edge = std::min(edge, d.max_tile_option);
  d.tile_edge = edge;
  if (map.rows == 0 || map.cols == 0) return;
  const int max_dim = static_cast<int>(d.props.limits.maxImageDimension2D);
  const bool tiled = map.cols > edge || map.rows > edge;
  const int halo = tiled ? kTileHalo : 0;
  if (tiled && edge + 2 * halo > max_dim) edge = max_dim - 2 * halo;
  d.tile_edge = edge;
  // The max-pooled pyramid of the whole map (host side, once per data update); each tile gets
  // the level-k cells covering its texture, so tiled and untiled pooling agree.
  const HeatmapPyramid pyramid = build_pyramid(map);
  d.levels = static_cast<int>(pyramid.levels.size());
  const int tx = (map.cols + edge - 1) / edge, ty = (map.rows + edge - 1) / edge;
  const uint32_t n = static_cast<uint32_t>(tx * ty * (d.levels + 1));
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, n};
  VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pi.maxSets = n;
  pi.poolSizeCount = 1;
  pi.pPoolSizes = &size;
  check(vkCreateDescriptorPool(d.device, &pi, nullptr, &d.tile_pool), "tile descriptor pool");
  auto add_set = [&](Tile& t, VkImageView view) {
    VkDescriptorSet set;
    VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = d.tile_pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &d.tile_layout;
    check(vkAllocateDescriptorSets(d.device, &ai, &set), "tile set");
    VkDescriptorImageInfo ii{d.sampler, view, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL};
    VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    w.dstSet = set;
    w.dstBinding = 0;
    w.descriptorCount = 1;
    w.descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
    w.pImageInfo = &ii;
    vkUpdateDescriptorSets(d.device, 1, &w, 0, nullptr);
    t.sets.push_back(set);
  };
  const VkImageUsageFlags usage = VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT;
  for (int j = 0; j < ty; ++j) {
    for (int i = 0; i < tx; ++i) {
      d.tiles.emplace_back();  // owned by d.tiles from here (freed on failure)
      Tile& t = d.tiles.back();
      t.x = i * edge;
      t.y = j * edge;
      t.w = std::min(edge, map.cols - t.x);
      t.h = std::min(edge, map.rows - t.y);
      t.tx = std::max(0, t.x - halo);
      t.ty = std::max(0, t.y - halo);
      t.tw = std::min(map.cols, t.x + t.w + halo) - t.tx;
      t.th = std::min(map.rows, t.y + t.h + halo) - t.ty;
      t.image = d.make_image(t.tw, t.th, VK_FORMAT_R32_SFLOAT, usage, /*red_as_green=*/true);
      add_set(t, t.image.view);
      for (int k = 1; k <= d.levels; ++k) {
        const glm::ivec4 r = t.level_tex(k);
        t.pyr.push_back(d.make_image(r.z, r.w, VK_FORMAT_R32G32_SFLOAT, usage));
        add_set(t, t.pyr.back().view);
      }
    }
  }
  // Every texture's cells in one staging buffer and one submission.
  std::vector<Impl::Region> regions;
  for (const Tile& t : d.tiles) {
    regions.push_back({t.image.image, t.tw, t.th,
                       reinterpret_cast<const uint8_t*>(
                           map.values.data() + static_cast<size_t>(t.ty) * map.cols + t.tx),
                       sizeof(float), static_cast<size_t>(map.cols)});
    for (int k = 1; k <= d.levels; ++k) {
      const HeatmapPyramid::Level& l = pyramid.level(k);
      const glm::ivec4 r = t.level_tex(k);
      regions.push_back({t.pyr[static_cast<size_t>(k - 1)].image, r.z, r.w,
                         reinterpret_cast<const uint8_t*>(
                             l.max_min.data() + (static_cast<size_t>(r.y) * l.cols + r.x) * 2),
                         2 * sizeof(float), static_cast<size_t>(l.cols)});
    }
  }
  d.upload_all(regions);
}

QImage VulkanHeatmapRenderer::render(const ColorScale& scale, const ViewTransform& view, int width,
                                     int height) {
  Impl& d = *impl_;
  if (width <= 0 || height <= 0)
    throw Error(ErrorKind::BadInput, "heatmap: image size must be positive");
  const int max_dim = static_cast<int>(d.props.limits.maxFramebufferWidth);
  if (width > max_dim || height > static_cast<int>(d.props.limits.maxFramebufferHeight))
    throw Error(ErrorKind::BadInput, "heatmap: image larger than the device's framebuffer");
  d.ensure_target(width, height);

  d.begin();
  VkClearValue clear{};
  clear.color.float32[0] = scale.background.r / 255.0f;
  clear.color.float32[1] = scale.background.g / 255.0f;
  clear.color.float32[2] = scale.background.b / 255.0f;
  clear.color.float32[3] = scale.background.a / 255.0f;
  VkRenderPassBeginInfo rb{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
  rb.renderPass = d.render_pass;
  rb.framebuffer = d.framebuffer;
  rb.renderArea.extent = {static_cast<uint32_t>(width), static_cast<uint32_t>(height)};
  rb.clearValueCount = 1;
  rb.pClearValues = &clear;
  vkCmdBeginRenderPass(d.cmd, &rb, VK_SUBPASS_CONTENTS_INLINE);
  d.draw(d.cmd, /*window=*/false, /*allow_flat=*/false, 0, scale, view, rb.renderArea);
  vkCmdEndRenderPass(d.cmd);
  VkBufferImageCopy region{};
  region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  region.imageExtent = {static_cast<uint32_t>(width), static_cast<uint32_t>(height), 1};
  vkCmdCopyImageToBuffer(d.cmd, d.target.image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL,
                         d.readback.buffer, 1, &region);
  VkBufferMemoryBarrier hb{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
  hb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  hb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  hb.srcQueueFamilyIndex = hb.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  hb.buffer = d.readback.buffer;
  hb.size = VK_WHOLE_SIZE;
  vkCmdPipelineBarrier(d.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0,
                       nullptr, 1, &hb, 0, nullptr);
  d.submit_and_wait();

  QImage img(width, height, QImage::Format_RGBA8888);
  const auto* src = static_cast<const uint8_t*>(d.readback.mapped);
  for (int y = 0; y < height; ++y)
    std::memcpy(img.scanLine(y), src + static_cast<size_t>(y) * width * 4,
                static_cast<size_t>(width) * 4);
  return img;
}

std::unique_ptr<VulkanHeatmapRenderer> VulkanHeatmapRenderer::create_on_device(
    const ExternalDevice& ext, const VulkanOptions& options, std::string* why_not) {
  auto impl = std::make_unique<Impl>();
  impl->owns_device = false;
  impl->max_tile_option = options.max_tile;
  impl->instance = static_cast<VkInstance>(ext.instance);
  impl->physical = static_cast<VkPhysicalDevice>(ext.physical_device);
  impl->device = static_cast<VkDevice>(ext.device);
  impl->queue_family = ext.queue_family;
  impl->queue = static_cast<VkQueue>(ext.queue);
  try {
    vkGetPhysicalDeviceProperties(impl->physical, &impl->props);
    vkGetPhysicalDeviceMemoryProperties(impl->physical, &impl->mem_props);
    impl->create_device_objects();
    impl->create_pipeline();
    impl->create_globals();
  } catch (const Error& e) {
    if (why_not) *why_not = e.detail();
    return nullptr;
  }
  return std::unique_ptr<VulkanHeatmapRenderer>(new VulkanHeatmapRenderer(std::move(impl)));
}

void VulkanHeatmapRenderer::attach_render_pass(void* render_pass) {
  Impl& d = *impl_;
  vkDeviceWaitIdle(d.device);
  d.destroy_pipelines(d.window_pipelines);
  for (VkPipeline& p : d.window_flat) {
    if (p) vkDestroyPipeline(d.device, p, nullptr);
    p = VK_NULL_HANDLE;
  }
  if (d.blit_pipeline) vkDestroyPipeline(d.device, d.blit_pipeline, nullptr);
  d.blit_pipeline = VK_NULL_HANDLE;
  d.window_pass = static_cast<VkRenderPass>(render_pass);
  // Build the common variant now (the first frame should not wait for a compile).
  if (d.window_pass) d.pipeline_for(true, 1, 0, 1);
}

void VulkanHeatmapRenderer::prepare(void* command_buffer, int slot, int width, int height,
                                    const ColorScale& scale, const ViewTransform& view) {
  Impl& d = *impl_;
  if (width <= 0 || height <= 0) return;
  slot = 1 + slot % (kUniformSlots - 1);  // slot 0 belongs to offscreen render()
  d.prepare(static_cast<VkCommandBuffer>(command_buffer), slot, width, height, scale, view);
}

void VulkanHeatmapRenderer::record(void* command_buffer, int slot, int x, int y, int width,
                                   int height, const ColorScale& scale, const ViewTransform& view) {
  Impl& d = *impl_;
  if (!d.window_pass)
    throw Error(ErrorKind::Internal, "heatmap: record() before attach_render_pass()");
  if (width <= 0 || height <= 0) return;
  slot = 1 + slot % (kUniformSlots - 1);  // slot 0 belongs to offscreen render()
  VkRect2D area{{x, y}, {static_cast<uint32_t>(width), static_cast<uint32_t>(height)}};
  const bool blit = d.use_cache && d.cache_ready && d.cache_w == width && d.cache_h == height;
  d.use_cache = false;  // prepare() decides again for the next frame
  if (blit) {
    d.record_blit(static_cast<VkCommandBuffer>(command_buffer), area);
    return;
  }
  d.draw(static_cast<VkCommandBuffer>(command_buffer), /*window=*/true, /*allow_flat=*/true, slot,
         scale, view, area);
}

std::string VulkanHeatmapRenderer::device_name() const {
  return impl_->props.deviceName;
}
int VulkanHeatmapRenderer::max_image_dimension() const {
  return static_cast<int>(impl_->props.limits.maxImageDimension2D);
}
int VulkanHeatmapRenderer::tile_size() const {
  return impl_->tile_edge;
}
int VulkanHeatmapRenderer::tile_count() const {
  return static_cast<int>(impl_->tiles.size());
}
ValidationCounts VulkanHeatmapRenderer::validation() const {
  return impl_->counts;
}
void* VulkanHeatmapRenderer::raw_instance() const {
  return impl_->instance;
}
void* VulkanHeatmapRenderer::raw_device() const {
  return impl_->device;
}

}  // namespace moelab::views
