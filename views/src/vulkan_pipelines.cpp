// Vulkan heatmap renderer: shader modules, layouts and render passes, the pipeline variants
// (created on first use).
#include "vulkan_heatmap_impl.h"  // first: vulkan.h before any Qt header

#include <cstddef>
#include <iterator>

#include "moelab/shaders/heatmap_blit_frag.spv.h"
#include "moelab/shaders/heatmap_blit_vert.spv.h"
#include "moelab/shaders/heatmap_cells_vert.spv.h"
#include "moelab/shaders/heatmap_flat_frag.spv.h"
#include "moelab/shaders/heatmap_frag.spv.h"
#include "moelab/shaders/heatmap_vert.spv.h"

namespace moelab::views {
using namespace detail;

VkShaderModule VulkanHeatmapRenderer::Impl::make_module(const uint32_t* code, size_t words) {
  VkShaderModuleCreateInfo ci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  ci.codeSize = words * 4;
  ci.pCode = code;
  VkShaderModule m;
  check(vkCreateShaderModule(device, &ci, nullptr, &m), "vkCreateShaderModule");
  return m;
}

void VulkanHeatmapRenderer::Impl::create_pipeline() {
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
  // (READ: the cache's partial pass loads the attachment; the passes must stay identical.)
  deps[0].dstAccessMask =
      VK_ACCESS_COLOR_ATTACHMENT_READ_BIT | VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
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
  // The cache's partial redraw (live rows): keeps the picture and redraws a band of it.
  att.loadOp = VK_ATTACHMENT_LOAD_OP_LOAD;
  att.initialLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL;
  check(vkCreateRenderPass(device, &rpi, nullptr, &cache_load_pass),
        "vkCreateRenderPass(cache, load)");
}

VkPipeline VulkanHeatmapRenderer::Impl::pipeline_for(bool window, int pool, int mapping,
                                                     int footprint) {
  VkPipeline& p = (window ? window_pipelines : pipelines)[pool][mapping][footprint];
  if (!p) p = make_pipeline(window ? window_pass : render_pass, pool, mapping, footprint);
  return p;
}

void VulkanHeatmapRenderer::Impl::destroy_pipelines(Pipelines& ps) {
  for (auto& a : ps)
    for (auto& b : a)
      for (VkPipeline& p : b) {
        if (p) vkDestroyPipeline(device, p, nullptr);
        p = VK_NULL_HANDLE;
      }
}

VkPipeline VulkanHeatmapRenderer::Impl::flat_pipeline(bool window, int mapping) {
  VkPipeline& p = (window ? window_flat : offscreen_flat)[mapping];
  if (!p) p = make_pipeline(window ? window_pass : render_pass, 0, mapping, 0, kFlat);
  return p;
}

VkPipeline VulkanHeatmapRenderer::Impl::make_pipeline(VkRenderPass pass, int pool, int mapping,
                                                      int footprint, Kind kind) {
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
  VkPipelineMultisampleStateCreateInfo ms{VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO};
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
  VkPipelineColorBlendStateCreateInfo cbs{VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO};
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

}  // namespace moelab::views
