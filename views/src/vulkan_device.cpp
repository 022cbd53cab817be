// Vulkan heatmap renderer: instance (validation layer, debug messenger), physical and logical
// device, command pool, fence and sampler, and teardown.
#include "vulkan_heatmap_impl.h"  // first: vulkan.h before any Qt header

#include <cstdlib>
#include <cstring>
#include <vector>

namespace moelab::views {
using namespace detail;

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

void VulkanHeatmapRenderer::Impl::create_instance(const VulkanOptions& opt) {
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

bool VulkanHeatmapRenderer::Impl::pick_device() {
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

void VulkanHeatmapRenderer::Impl::create_device() {
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

void VulkanHeatmapRenderer::Impl::create_device_objects() {
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

void VulkanHeatmapRenderer::Impl::destroy() {
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
    if (cache_load_pass) vkDestroyRenderPass(device, cache_load_pass, nullptr);
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

}  // namespace moelab::views
